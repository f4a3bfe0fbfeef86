package esp

import (
	"bytes"
	"testing"
)

// FuzzOpen feeds arbitrary packets to an inbound SA. Open must never panic,
// must report every failure as a Drop, and must accept only packets that
// Seal produced with the same key: the seed corpus holds such packets, and
// anything the fuzzer derives from them has to fail.
func FuzzOpen(f *testing.F) {
	keymat := testKeymat(42)
	sealed := map[string][]byte{} // packet -> inner
	for _, s := range suites {
		tx, err := NewSA(Config{SPI: 0xabcd_0000 | uint32(s), Suite: s, Keymat: keymat})
		if err != nil {
			f.Fatal(err)
		}
		for _, n := range []int{0, 1, 2, 3, 4, 40, 1400} {
			inner := innerPacket(n)
			pkt, _ := tx.Seal(nil, inner)
			sealed[string(pkt)] = inner
			f.Add(pkt)
		}
	}
	f.Add([]byte{})
	f.Add(make([]byte, MinLen))

	var rx [3]*SA
	for _, s := range suites {
		rx[s], _ = NewSA(Config{SPI: 0xabcd_0000 | uint32(s), Suite: s, Keymat: keymat})
	}
	buf := make([]byte, 0, 2048)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, s := range suites {
			sa := rx[s]
			sa.win.Reset() // each input is judged on its own
			inner, nh, err := sa.Open(buf[:0], pkt)
			if err != nil {
				if _, ok := err.(Drop); !ok {
					t.Fatalf("non-Drop error %v", err)
				}
				if sa.win.Highest() != 0 && err != ErrPadding && err != ErrNextHeader && err != ErrDummy {
					t.Fatalf("window moved on %v", err)
				}
				continue
			}
			want, ok := sealed[string(pkt)]
			if !ok {
				t.Fatalf("%v accepted a packet it never sealed: %x", s, pkt)
			}
			if !bytes.Equal(inner, want) || nh != NextHeaderIPv6 {
				t.Fatalf("%v: wrong inner packet", s)
			}
			// In place gives the same answer.
			sa.win.Reset()
			cp := bytes.Clone(pkt)
			inner2, _, err := sa.Open(cp[HeaderLen:HeaderLen], cp)
			if err != nil || !bytes.Equal(inner2, want) {
				t.Fatalf("%v: in-place Open: %v", s, err)
			}
		}
	})
}

// FuzzClassify checks that Classify never panics and that its payload is a
// suffix of its input.
func FuzzClassify(f *testing.F) {
	f.Add([]byte{0xff})
	f.Add([]byte{0, 0, 0, 0, 1})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, out := Classify(b)
		if (k == ESP || k == NonESP) != (out != nil) || !bytes.HasSuffix(b, out) {
			t.Fatalf("Classify(%x) = %v %x", b, k, out)
		}
	})
}
