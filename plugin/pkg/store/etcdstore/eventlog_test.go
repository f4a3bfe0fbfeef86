package etcdstore

import (
	"reflect"
	"testing"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

func TestEventsRoundTrip(t *testing.T) {
	a, _ := dns.NewRR("laptop.alice.members.example.com. 60 IN AAAA fd00::1")
	b, _ := dns.NewRR("Laptop.alice.members.example.com. 60 IN TXT \"pk=abc\"")
	evs := []store.Event{
		{Serial: 7, Changes: []store.Change{{Name: "laptop.alice.members.example.com.", Added: []dns.RR{a, b}}}},
		{Serial: 8, Expired: true, Changes: []store.Change{{Name: "laptop.alice.members.example.com.", Removed: []dns.RR{a}}}},
	}
	enc, err := encodeEvents(evs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeEvents(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Serial != 8 || !got[1].Expired || got[0].Expired ||
		got[0].Changes[0].Added[1].String() != b.String() || !reflect.DeepEqual(got[1].Changes[0].Removed[0].(*dns.AAAA).AAAA, a.(*dns.AAAA).AAAA) {
		t.Fatalf("round trip: %+v", got)
	}
	for i := range enc {
		if _, err := decodeEvents(enc[:i]); err == nil {
			t.Fatalf("a value cut at %d of %d octets decoded", i, len(enc))
		}
	}
}

func FuzzDecodeEvents(f *testing.F) {
	a, _ := dns.NewRR("h.alice.members.example.com. 60 IN A 192.0.2.1")
	enc, _ := encodeEvents([]store.Event{{Serial: 1, Changes: []store.Change{{Name: "h.alice.members.example.com.", Added: []dns.RR{a}}}}})
	f.Add(enc)
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := decodeEvents(b)
		if err != nil {
			return
		}
		again, err := encodeEvents(evs)
		if err != nil {
			t.Fatalf("decoded events do not encode: %v", err)
		}
		back, err := decodeEvents(again)
		if err != nil || len(back) != len(evs) {
			t.Fatalf("round trip: %d events, %v; want %d", len(back), err, len(evs))
		}
	})
}
