package boltstore

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// BenchmarkSet replaces one name's record in zones of growing size, with
// and without the log's sync, to show that an update costs what it
// touches, not the zone. test/bench compares the whole server with
// CoreDNS's dynupdate, BIND and Knot.
func BenchmarkSet(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		for _, durable := range []bool{false, true} {
			b.Run(fmt.Sprintf("records=%d/durable=%v", n, durable), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "z.db")
				seed(b, path, n)
				s, err := Open(path, zone, Options{NoSync: !durable, ManualSweep: true})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				name := "change.alice.members.example.com."
				rrs := make([]dns.RR, 2)
				for i := range rrs {
					rrs[i], _ = dns.NewRR(fmt.Sprintf("%s 60 IN A 192.0.2.%d", name, i+1))
				}
				exp := time.Now().Add(time.Hour)
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					if _, err := s.Update(func(tx store.Tx) error {
						return tx.Set(name, []store.Record{{RR: rrs[i%2], Expires: exp}})
					}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkOpen loads a store of n records (the start-up of a server) and
// reports the memory the zone takes per record.
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "z.db")
			seed(b, path, n)
			b.ResetTimer()
			for range b.N {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				s, err := Open(path, zone, Options{ManualSweep: true})
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-B/record")
				s.Close()
			}
		})
	}
}

// seed fills a store with n one-record names spread over 5000 users.
func seed(b *testing.B, path string, n int) {
	s, err := Open(path, zone, Options{NoSync: true, ManualSweep: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const batch = 20_000
	for i := 0; i < n; i += batch {
		if _, err := s.Update(func(tx store.Tx) error {
			for j := i; j < min(i+batch, n); j++ {
				name := fmt.Sprintf("h%d.u%d.members.example.com.", j, j%5000)
				rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A 198.51.%d.%d", name, j/250%250, j%250+1))
				if err := tx.Set(name, []store.Record{{RR: rr}}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}
