package esp

import "testing"

const benchSize = 1400

func BenchmarkSeal(b *testing.B) {
	for _, s := range suites {
		b.Run(s.String(), func(b *testing.B) {
			tx, _ := pair(b, s, false)
			buf := make([]byte, HeaderLen+benchSize, SealedLen(benchSize))
			b.SetBytes(benchSize)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tx.Seal(buf[:0], buf[HeaderLen:HeaderLen+benchSize]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, s := range suites {
		b.Run(s.String(), func(b *testing.B) {
			tx, rx := pair(b, s, false)
			// Seal a ring of distinct packets ahead of time so that each
			// Open sees a fresh sequence number; Open is in place, so
			// each round decrypts a copy.
			const ring = 256
			pkts := make([][]byte, ring)
			for i := range pkts {
				pkts[i], _ = tx.Seal(nil, innerPacket(benchSize))
			}
			work := make([]byte, SealedLen(benchSize))
			b.SetBytes(benchSize)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == ring {
					// Re-seal the ring with new numbers (rare, outside the
					// common path; excluded from the timing).
					b.StopTimer()
					for j := range pkts {
						pkts[j], _ = tx.Seal(pkts[j][:0], innerPacket(benchSize))
					}
					i = 0
					b.StartTimer()
				}
				copy(work, pkts[i])
				i++
				if _, _, err := rx.Open(work[HeaderLen:HeaderLen], work); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestZeroAlloc pins the data path's promise: in place, Seal and Open do not
// allocate, and neither does a drop.
func TestZeroAlloc(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	for _, s := range suites {
		tx, rx := pair(t, s, false)
		buf := make([]byte, HeaderLen+benchSize, SealedLen(benchSize))
		bad := make([]byte, MinLen)
		var drops DropCounts
		n := testing.AllocsPerRun(100, func() {
			pkt, err := tx.Seal(buf[:0], buf[HeaderLen:HeaderLen+benchSize])
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := rx.Open(pkt[HeaderLen:HeaderLen], pkt); err != nil {
				t.Fatal(err)
			}
			if _, _, err := rx.Open(nil, bad); !drops.Add(err) {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("%v: %v allocs per Seal+Open+drop", s, n)
		}
	}
}
