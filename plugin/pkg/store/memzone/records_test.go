package memzone

import (
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

func FuzzDecodeRecords(f *testing.F) {
	r, _ := dns.NewRR("h.alice.members.example.com. 60 IN A 192.0.2.1")
	b, _ := EncodeRecords([]store.Record{{RR: r, Expires: time.Unix(1, 0)}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := DecodeRecords(b)
		if err != nil {
			return
		}
		again, err := EncodeRecords(recs)
		if err != nil {
			t.Fatalf("decoded records do not encode: %v", err)
		}
		if back, err := DecodeRecords(again); err != nil || len(back) != len(recs) {
			t.Fatalf("round trip: %d records, %v; want %d", len(back), err, len(recs))
		}
	})
}
