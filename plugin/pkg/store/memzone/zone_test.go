package memzone

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

const zone = "members.example.com."

// TestZoneIndexes sets, renews and deletes names at random and checks,
// after every step, what the zone derives from the records: the lease
// heap (each name where its entry says, ordered, and due finding exactly
// the names with an ended lease), the counts of names below each name,
// and the usage per owner.
func TestZoneIndexes(t *testing.T) {
	z, err := New(zone, 1)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1_800_000_000, 0)
	names := make([]string, 60)
	for i := range names {
		names[i] = fmt.Sprintf("h%d.s%d.u%d.%s", i, i%4, i%3, zone)
	}
	for step := range 2000 {
		name := names[rand.IntN(len(names))]
		key, _ := z.KeyOf(name)
		var recs []store.Record
		for j := range rand.IntN(3) {
			rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A 192.0.2.%d", name, j+1))
			r := store.Record{RR: rr}
			if rand.IntN(2) == 0 {
				r.Expires = base.Add(time.Duration(rand.IntN(100)) * time.Second)
			}
			recs = append(recs, r)
		}
		packed, err := EncodeRecords(recs)
		if err != nil {
			t.Fatal(err)
		}
		z.Set(key, packed)

		at := base.Add(time.Duration(rand.IntN(100)) * time.Second)
		due := make(map[string]bool)
		for _, k := range z.Due(at) {
			due[k] = true
		}
		below := make(map[string]int)
		usage := make(map[string]store.Usage)
		for k, e := range z.names {
			if e.expires != FirstExpiry(e.packed) {
				t.Fatalf("step %d: %q expires %d, its records say %d", step, k, e.expires, FirstExpiry(e.packed))
			}
			if (e.lease >= 0) != (e.expires != 0) || e.lease >= 0 && z.leases.items[e.lease].key != k {
				t.Fatalf("step %d: %q has lease index %d, expires %d", step, k, e.lease, e.expires)
			}
			if want := e.expires != 0 && e.expires <= at.UnixNano(); due[k] != want {
				t.Fatalf("step %d: %q due=%v, want %v", step, k, due[k], want)
			}
			for off := len(z.apexKey); off < len(k); off += int(k[off]) + 1 {
				below[k[:off]]++
			}
			usage[z.OwnerKey(k)] = AddUsage(usage[z.OwnerKey(k)], e.packed, 1)
		}
		if len(z.leases.items) != len(due)+countLeasesAfter(z, at) {
			t.Fatalf("step %d: %d names in the lease heap", step, len(z.leases.items))
		}
		for i := 1; i < len(z.leases.items); i++ {
			if z.leases.items[(i-1)/2].at > z.leases.items[i].at {
				t.Fatalf("step %d: lease heap out of order at %d", step, i)
			}
		}
		if fmt.Sprint(below) != fmt.Sprint(z.below) {
			t.Fatalf("step %d: names below: %v, want %v", step, z.below, below)
		}
		if fmt.Sprint(usage) != fmt.Sprint(z.usage) {
			t.Fatalf("step %d: usage %v, want %v", step, z.usage, usage)
		}
	}
}

func countLeasesAfter(z *Zone, at time.Time) int {
	n := 0
	for _, l := range z.leases.items {
		if l.at > at.UnixNano() {
			n++
		}
	}
	return n
}
