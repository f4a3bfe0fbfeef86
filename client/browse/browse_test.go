package browse

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/subscribe"
)

const d = "alice.members.example.com."

// fakeSession answers Setup from a zone and records what is subscribed.
type fakeSession struct {
	zone   []dns.RR
	subs   map[string]bool // "name type"
	events chan subscribe.Event
	done   chan struct{}
}

func newFake(t *testing.T, records ...string) *fakeSession {
	f := &fakeSession{subs: map[string]bool{}, events: make(chan subscribe.Event, 16), done: make(chan struct{})}
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatal(err)
		}
		f.zone = append(f.zone, rr)
	}
	return f
}

type fakeSub struct {
	f   *fakeSession
	key string
}

func (s fakeSub) Name() string                 { return s.key }
func (s fakeSub) Cancel(context.Context) error { delete(s.f.subs, s.key); return nil }

func (f *fakeSession) Setup(_ context.Context, name string, qtype uint16) (subscribe.Sub, []dns.RR, error) {
	key := dns.CanonicalName(name) + " " + dns.TypeToString[qtype]
	f.subs[key] = true
	var out []dns.RR
	for _, rr := range f.zone {
		if dns.CanonicalName(rr.Header().Name) == dns.CanonicalName(name) && rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	return fakeSub{f, key}, out, nil
}
func (f *fakeSession) Events() <-chan subscribe.Event { return f.events }
func (f *fakeSession) Done() <-chan struct{}          { return f.done }
func (f *fakeSession) Err() error                     { return nil }
func (f *fakeSession) Maintain(context.Context) error { return nil }
func (f *fakeSession) Close() error                   { return nil }
func (f *fakeSession) Mode() string                   { return "fake" }
func (f *fakeSession) Server() string                 { return "fake" }

var zone = []string{
	"_services._dns-sd._udp." + d + " 60 IN PTR _ssh._tcp." + d,
	"_services._dns-sd._udp." + d + " 60 IN PTR _http._tcp." + d,
	"_ssh._tcp." + d + " 60 IN PTR desktop._ssh._tcp." + d,
	"_ssh._tcp." + d + " 60 IN PTR laptop._ssh._tcp." + d,
	"desktop._ssh._tcp." + d + " 60 IN SRV 0 0 22 desktop." + d,
	"desktop._ssh._tcp." + d + ` 60 IN TXT ""`,
	"laptop._ssh._tcp." + d + " 60 IN SRV 0 0 2222 laptop." + d,
	"_http._tcp." + d + " 60 IN PTR desktop._http._tcp." + d,
	"desktop._http._tcp." + d + " 60 IN SRV 0 0 8080 desktop." + d,
	"desktop._http._tcp." + d + ` 60 IN TXT "path=/" "a b"`,
	// Not of this domain or malformed: ignored.
	"_ssh._tcp." + d + " 60 IN PTR x._ssh._tcp.bob.members.example.com.",
	"_services._dns-sd._udp." + d + " 60 IN PTR _x._tcp.bob.members.example.com.",
}

func rr(t *testing.T, s string) dns.RR {
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestBrowseAll(t *testing.T) {
	ctx := context.Background()
	var got []string
	b := New(d, "", func(c Change) { got = append(got, c.String()) })
	f := newFake(t, zone...)
	if err := b.Sync(ctx, f); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"+ desktop  _ssh._tcp  desktop." + d + ":22",
		"+ laptop  _ssh._tcp  laptop." + d + ":2222",
		"+ desktop  _http._tcp  desktop." + d + `:8080  path=/ "a b"`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("first lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !f.subs["desktop._ssh._tcp."+d+" TXT"] || !f.subs["_services._dns-sd._udp."+d+" PTR"] || f.subs["x._ssh._tcp.bob.members.example.com. SRV"] {
		t.Errorf("subscriptions %v", f.subs)
	}

	// The laptop's ssh goes (its PTR removed); the desktop's http TXT
	// changes; a new type with an instance whose SRV comes later.
	got = nil
	apply := func(ev subscribe.Event) {
		if err := b.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	apply(subscribe.Event{Name: "_ssh._tcp." + d, Qtype: dns.TypePTR, Removed: []dns.RR{rr(t, "_ssh._tcp."+d+" 0 IN PTR laptop._ssh._tcp."+d)}})
	apply(subscribe.Event{Name: "desktop._http._tcp." + d, Qtype: dns.TypeTXT,
		Removed: []dns.RR{rr(t, "desktop._http._tcp."+d+` 0 IN TXT "path=/" "a b"`)},
		Added:   []dns.RR{rr(t, "desktop._http._tcp."+d+` 60 IN TXT "path=/x"`)}})
	f.zone = append(f.zone, rr(t, "_rfb._tcp."+d+" 60 IN PTR desktop._rfb._tcp."+d))
	apply(subscribe.Event{Name: "_services._dns-sd._udp." + d, Qtype: dns.TypePTR, Added: []dns.RR{rr(t, "_services._dns-sd._udp."+d+" 60 IN PTR _rfb._tcp."+d)}})
	apply(subscribe.Event{Name: "desktop._rfb._tcp." + d, Qtype: dns.TypeSRV, Added: []dns.RR{rr(t, "desktop._rfb._tcp."+d+" 60 IN SRV 0 0 5900 desktop."+d)}})
	// The same record again (a PUSH after the query): nothing new.
	apply(subscribe.Event{Name: "desktop._rfb._tcp." + d, Qtype: dns.TypeSRV, Added: []dns.RR{rr(t, "desktop._rfb._tcp."+d+" 60 IN SRV 0 0 5900 desktop."+d)}})
	want = []string{
		"- laptop  _ssh._tcp  laptop." + d + ":2222",
		"- desktop  _http._tcp  desktop." + d + `:8080  path=/ "a b"`,
		"+ desktop  _http._tcp  desktop." + d + ":8080  path=/x",
		"+ desktop  _rfb._tcp  desktop." + d + ":5900",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if f.subs["laptop._ssh._tcp."+d+" SRV"] {
		t.Error("the laptop's instance is still subscribed")
	}

	// The type goes from the enumeration: its instances go.
	got = nil
	apply(subscribe.Event{Name: "_services._dns-sd._udp." + d, Qtype: dns.TypePTR, Removed: []dns.RR{rr(t, "_services._dns-sd._udp."+d+" 0 IN PTR _ssh._tcp."+d)}})
	if want := []string{"- desktop  _ssh._tcp  desktop." + d + ":22"}; !slices.Equal(got, want) {
		t.Errorf("type gone: %q", got)
	}

	// A new session on a zone where the desktop's http went meanwhile:
	// only that is reported.
	got = nil
	f2 := newFake(t,
		"_services._dns-sd._udp."+d+" 60 IN PTR _rfb._tcp."+d,
		"_rfb._tcp."+d+" 60 IN PTR desktop._rfb._tcp."+d,
		"desktop._rfb._tcp."+d+" 60 IN SRV 0 0 5900 desktop."+d)
	if err := b.Sync(ctx, f2); err != nil {
		t.Fatal(err)
	}
	if want := []string{"- desktop  _http._tcp  desktop." + d + ":8080  path=/x"}; !slices.Equal(got, want) {
		t.Errorf("after a new session: %q", got)
	}
	if s := b.Shown(); len(s) != 1 || s[0].Type != "_rfb._tcp" {
		t.Errorf("Shown: %+v", s)
	}
}

// One type: only its list is followed, not the enumeration.
func TestBrowseOneType(t *testing.T) {
	var got []string
	b := New(d, "_ssh._tcp", func(c Change) { got = append(got, c.String()) })
	f := newFake(t, zone...)
	if err := b.Sync(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || f.subs["_services._dns-sd._udp."+d+" PTR"] || f.subs["_http._tcp."+d+" PTR"] {
		t.Errorf("lines %q, subscriptions %v", got, f.subs)
	}
	b.Close(context.Background())
	if len(f.subs) != 0 {
		t.Errorf("left subscribed after Close: %v", f.subs)
	}
}

// TXT strings are reported as their octets, not miekg/dns's escaped form.
func TestBrowseTXTOctets(t *testing.T) {
	var got []string
	b := New(d, "_http._tcp", func(c Change) { got = append(got, c.String()) })
	f := newFake(t,
		"_http._tcp."+d+" 60 IN PTR desktop._http._tcp."+d,
		"desktop._http._tcp."+d+" 60 IN SRV 0 0 80 desktop."+d,
		"desktop._http._tcp."+d+` 60 IN TXT "q=\"x\"" "b=\255"`)
	if err := b.Sync(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	if s := b.Shown(); len(s) != 1 || !slices.Equal(s[0].TXT, []string{`q="x"`, "b=\xff"}) {
		t.Errorf("%+v", s)
	}
	if len(got) != 1 || !strings.HasSuffix(got[0], `:80  "q=\"x\"" b=`+"\xff") {
		t.Errorf("%q", got)
	}
}
