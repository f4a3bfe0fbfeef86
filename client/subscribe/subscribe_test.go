package subscribe

import (
	"context"
	"errors"
	"testing"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/discover"
	"github.com/openbtmm/btmm/client/dnspush"
)

func mustRR(t *testing.T, s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

// A PUSH of changes to several names and types becomes one event per name
// and type; Apply takes them in without duplicates.
func TestSplitApply(t *testing.T) {
	a1 := mustRR(t, "a.example. 60 IN PTR x.example.")
	a2 := mustRR(t, "A.example. 60 IN PTR y.example.")
	b := mustRR(t, "b.example. 60 IN SRV 0 0 22 h.example.")
	bt := mustRR(t, `b.example. 60 IN TXT ""`)
	evs := Split(dnspush.Push{Added: []dns.RR{a2, b, bt}, Removed: []dns.RR{a1}})
	if len(evs) != 3 || evs[0].Name != "a.example." || len(evs[0].Removed) != 1 || len(evs[0].Added) != 1 ||
		evs[1].Qtype != dns.TypeSRV || evs[2].Qtype != dns.TypeTXT {
		t.Fatalf("%+v", evs)
	}
	rrs := Apply([]dns.RR{a1}, evs[0])
	rrs = Apply(rrs, Event{Added: []dns.RR{a2}})
	if len(rrs) != 1 || rrs[0].(*dns.PTR).Ptr != "y.example." {
		t.Errorf("%v", rrs)
	}
}

// dns-push with a transport other than TLS is refused before anything is
// sent.
func TestDialDNSPushNeedsTLS(t *testing.T) {
	_, err := Dial(context.Background(), Config{Resolver: &discover.Resolver{Server: "127.0.0.1:1"}, Zone: "example.", Push: DNSPush, Transport: "tcp"})
	if err == nil || errors.Is(err, discover.ErrNotOffered) {
		t.Errorf("%v", err)
	}
}
