package replay

import (
	"encoding/binary"
	"math"
	"math/big"
	"testing"
)

const two32 = uint64(1) << 32

// step is one operation on a Window in a table test.
type step struct {
	op  byte   // 'c': Check(Low(val)); 'a': Accept(val); 'r': receive, i.e. Check(Low(val)) then Accept if ok
	val uint64 // the full sequence number the sender used (Check sees only its low bits)
	seq uint64 // for 'c' and 'r': the sequence number Check must infer
	ok  bool   // Check's verdict ('c'), Accept's ('a'), or both ('r')
}

func c(val, seq uint64, ok bool) step { return step{'c', val, seq, ok} }
func r(val uint64, ok bool) step      { return step{'r', val, val, ok} }
func a(val uint64, ok bool) step      { return step{'a', val, 0, ok} }

func TestWindow(t *testing.T) {
	const W = WindowSize
	const H = 5000 // a right edge well above the window size, below 2^32
	tests := []struct {
		name  string
		start uint64 // accepted before the steps, unless 0
		steps []step
	}{
		{"first packets", 0, []step{
			r(1, true), r(1, false), r(3, true), r(2, true), r(3, false), r(2, false),
		}},
		{"zero never valid", 0, []step{
			c(0, 0, false), a(0, false), r(1, true), c(0, 0, false), a(0, false),
		}},
		{"no subspace below the first", 0, []step{
			// Case B with Th = 0: the RFC's Seqh = Th-1 would be -1.
			c(math.MaxUint32, 0, false),
			c(two32-(W-1), 0, false),  // the wrapped bottom edge Bl itself
			c(two32-W, two32-W, true), // just below Bl: read as far ahead
			r(W-1, true),              // Tl = W-1 is case A already
			c(math.MaxUint32, math.MaxUint32, true),
		}},
		{"window edges", H, []step{
			c(H, H, false),                // the right edge itself is a duplicate
			c(H+1, H+1, true),             // next in order
			r(H-W+1, true),                // oldest still in the window, once
			r(H-W+1, false),               // and not twice
			a(H-W, false),                 // one below the window
			c(H-W, H-W+two32, true),       // on the wire it reads as the next subspace; its ICV will fail
			c(H-W+two32, H-W+two32, true), // the same wire bits
			r(H-1, true), r(H-1, false),
		}},
		{"duplicates out of order", H, []step{
			r(H-10, true), r(H-20, true), r(H-10, false), r(H+5, true), r(H-20, false),
			r(H+1, true), r(H+5, false), r(H, false),
		}},
		{"jump of exactly one window", H, []step{
			r(H+W, true), // window is now [H+1, H+W]
			a(H, false), r(H+1, true), r(H+1, false),
		}},
		{"jump onto the same ring bit", 10, []step{
			r(10+ringBlocks*blockBits, true), // bit aliases 10's; must read as clean
			r(10+ringBlocks*blockBits-(W-1), true),
			a(10, false),
		}},
		{"jump far ahead clears everything", 100, []step{
			r(99, true), r(98, true),
			r(100+1<<20, true),
			r(100+1<<20-1, true), r(100+1<<20-(W-1), true),
			a(99, false), a(100, false),
		}},
		{"jump across subspaces", 100, []step{
			a(100+5*two32, true),
			c(100, 100+5*two32, false),
			r(99+5*two32, true),
			a(101, false),
		}},
		// ESN inference at the 2^32 boundary.
		{"pre-wrap packet arrives after the wrap", two32 + 5, []step{
			r(two32-16, true), // Case B: Seql >= Bl, Seqh = Th-1
			r(two32-16, false),
			r(two32-1, true),
			r(two32, true),                  // low 32 bits all zero: valid with ESN
			r(two32+5-(W-1), true),          // bottom of the window, in the old subspace
			c(two32+5-W, 2*two32+5-W, true), // below it: read as ahead (Seqh = Th)
			a(two32+5-W, false),
			r(two32+4, true),
		}},
		{"post-wrap packet arrives while the window is below", two32 - 10, []step{
			c(two32-5, two32-5, true), // Case A, Seql >= Bl: same subspace
			r(two32+3, true),          // Case A, Seql < Bl: Seqh = Th+1
			// The window now spans both subspaces (Case B).
			r(two32-12, true),
			r(two32-10, false),
			r(two32-5, true),
			r(two32, true),
			r(two32+3, false),
		}},
		{"right edge exactly W-1 into the subspace", two32 + W - 1, []step{
			// Tl = W-1: Case A, the window is [2^32, 2^32+W-1].
			r(two32, true),
			c(two32-1, 2*two32-1, true), // below the window: next subspace
			a(two32-1, false),
		}},
		{"top of the sequence space", math.MaxUint64 - 1, []step{
			r(math.MaxUint64, true), // the last number a sender may use
			r(math.MaxUint64, false),
			c(math.MaxUint64-W, 0, false), // below the window: Th+1 would pass 2^64-1
			c(0, 0, false),                // likewise
			r(math.MaxUint64-(W-1), true),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Window
			if tt.start != 0 && !w.Accept(tt.start) {
				t.Fatalf("Accept(start %#x) = false", tt.start)
			}
			for i, s := range tt.steps {
				switch s.op {
				case 'c', 'r':
					seq, ok := w.Check(Low(s.val))
					if seq != s.seq || ok != s.ok {
						t.Fatalf("step %d: Check(%#x) (sent as %#x, highest %#x) = %#x, %v; want %#x, %v",
							i, Low(s.val), s.val, w.Highest(), seq, ok, s.seq, s.ok)
					}
					if s.op == 'r' && ok && !w.Accept(seq) {
						t.Fatalf("step %d: Accept(%#x) after a good Check = false", i, seq)
					}
				case 'a':
					if got := w.Accept(s.val); got != s.ok {
						t.Fatalf("step %d: Accept(%#x) (highest %#x) = %v, want %v", i, s.val, w.Highest(), got, s.ok)
					}
				}
			}
		})
	}
}

// TestJumpClearsStaleBits fills a whole window, jumps ahead by various
// distances, and checks that exactly the numbers still inside the new window
// remain marked.
func TestJumpClearsStaleBits(t *testing.T) {
	for _, base := range []uint64{WindowSize, 5000, two32 - 3, 7*two32 + 63} {
		for _, d := range []uint64{1, 63, 64, 65, WindowSize - 1, WindowSize, WindowSize + 1,
			ringBlocks*blockBits - 1, ringBlocks * blockBits, ringBlocks*blockBits + 1, 1 << 40} {
			var w Window
			for s := base - WindowSize + 1; s <= base; s++ {
				if !w.Accept(s) {
					t.Fatalf("base %#x: Accept(%#x) = false", base, s)
				}
			}
			top := base + d
			if !w.Accept(top) {
				t.Fatalf("base %#x d %d: Accept(top) = false", base, d)
			}
			for s := top - WindowSize + 1; s <= top; s++ {
				want := !(s == top || s <= base) // unmarked: neither the new edge nor an old one
				if seq, ok := w.Check(Low(s)); seq != s || ok != want {
					t.Fatalf("base %#x d %d: Check(Low(%#x)) = %#x, %v; want %v", base, d, s, seq, ok, want)
				}
			}
		}
	}
}

func TestCheckThenAccept(t *testing.T) {
	var w Window
	for s := uint64(1); s <= 3000; s += 3 {
		w.Accept(s)
	}
	before := w
	// Check twice, as for a packet whose ICV then fails, or a retry: no change.
	for range 2 {
		if seq, ok := w.Check(2997); seq != 2997 || !ok {
			t.Fatalf("Check(2997) = %d, %v; want 2997, true", seq, ok)
		}
		if seq, ok := w.Check(5000); seq != 5000 || !ok {
			t.Fatalf("Check(5000) = %d, %v; want 5000, true", seq, ok)
		}
	}
	if w != before {
		t.Fatal("Check changed the window")
	}
	// Accept after Check marks it.
	if !w.Accept(2997) {
		t.Fatal("Accept(2997) = false")
	}
	if _, ok := w.Check(2997); ok {
		t.Fatal("Check(2997) after Accept = true")
	}
	if w.Accept(2997) {
		t.Fatal("second Accept(2997) = true")
	}
	if w.Highest() != 2998 {
		t.Fatalf("Highest() = %d, want 2998", w.Highest())
	}

	// Two copies checked before either is accepted: only one gets in.
	s1, ok1 := w.Check(2000)
	s2, ok2 := w.Check(2000)
	if !ok1 || !ok2 || s1 != s2 {
		t.Fatalf("two Checks of a fresh number: %d %v, %d %v", s1, ok1, s2, ok2)
	}
	if !w.Accept(s1) || w.Accept(s2) {
		t.Fatal("want the first Accept true and the second false")
	}

	// A number checked while in the window, then pushed out by a jump that
	// was accepted first: Accept must refuse it.
	old, ok := w.Check(Low(w.Highest() - (WindowSize - 2))) // 1976: unmarked, second from the bottom
	if !ok {
		t.Fatal("Check near the bottom edge = false")
	}
	if !w.Accept(w.Highest() + 2) {
		t.Fatal("Accept(highest+2) = false")
	}
	if w.Accept(old) {
		t.Fatalf("Accept(%d) after it left the window = true", old)
	}
}

func TestReset(t *testing.T) {
	var w Window
	for _, s := range []uint64{1, 2, 900, two32 + 7} {
		w.Accept(s)
	}
	w.Reset()
	if w != (Window{}) || w.Highest() != 0 {
		t.Fatal("Reset did not restore the zero value")
	}
	if seq, ok := w.Check(1); seq != 1 || !ok {
		t.Fatalf("after Reset, Check(1) = %d, %v", seq, ok)
	}
}

func TestCounter(t *testing.T) {
	var c Counter
	for want := uint64(1); want <= 3; want++ {
		if seq, ok := c.Next(); seq != want || !ok {
			t.Fatalf("Next() = %d, %v; want %d, true", seq, ok, want)
		}
	}
	c.last = two32 - 1
	if seq, ok := c.Next(); seq != two32 || !ok || Low(seq) != 0 {
		t.Fatalf("Next() past 2^32-1 = %#x, %v (low %#x); want 2^32, true, low 0", seq, ok, Low(seq))
	}
	c.last = math.MaxUint64 - 1
	if seq, ok := c.Next(); seq != math.MaxUint64 || !ok {
		t.Fatalf("Next() = %#x, %v; want 2^64-1, true", seq, ok)
	}
	for range 2 {
		if seq, ok := c.Next(); seq != 0 || ok {
			t.Fatalf("Next() after 2^64-1 = %#x, %v; want 0, false", seq, ok)
		}
	}
}

func TestLow(t *testing.T) {
	for _, tt := range []struct {
		seq  uint64
		want uint32
	}{{1, 1}, {two32 - 1, math.MaxUint32}, {two32, 0}, {0x1234_5678_9abc_def0, 0x9abc_def0}} {
		if got := Low(tt.seq); got != tt.want {
			t.Errorf("Low(%#x) = %#x, want %#x", tt.seq, got, tt.want)
		}
	}
}

// model is a naive anti-replay receiver: every accepted number in a map, the
// highest beside it. Its ESN inference is not the RFC's case analysis but
// the property behind it: seq is the one integer congruent to the wire bits
// mod 2^32 in [T-W+1, T-W+2^32], computed with big integers, and valid only
// if it lies in [1, 2^64-1].
type model struct {
	highest uint64
	seen    map[uint64]bool
}

var (
	bigW    = big.NewInt(WindowSize)
	big2p32 = new(big.Int).Lsh(big.NewInt(1), 32)
)

func (m *model) check(low uint32) (uint64, bool) {
	bottom := new(big.Int).SetUint64(m.highest)
	bottom.Sub(bottom, bigW).Add(bottom, big.NewInt(1))
	seq := new(big.Int).SetUint64(uint64(low))
	seq.Sub(seq, bottom).Mod(seq, big2p32).Add(seq, bottom) // Mod is Euclidean: never negative
	if seq.Sign() <= 0 || !seq.IsUint64() {
		return 0, false
	}
	s := seq.Uint64()
	return s, !m.seen[s]
}

func (m *model) accept(seq uint64) bool {
	if seq == 0 || m.seen[seq] {
		return false
	}
	if seq <= m.highest && m.highest-seq >= WindowSize {
		return false
	}
	m.seen[seq] = true
	m.highest = max(m.highest, seq)
	return true
}

// FuzzWindow drives a Window and the model with the same operations and
// requires the same answer from both at every step. The input is a starting
// right edge and 3-byte operations: a kind byte, then a signed 16-bit distance
// from the current right edge, scaled and offset as the kind byte says, so
// the fuzzer reaches the window edges, the ring's size, and 2^32 jumps.
func FuzzWindow(f *testing.F) {
	for _, start := range []uint64{0, 1, 5000, two32 - 10, two32 + 5, 1 << 63, math.MaxUint64 - 3} {
		f.Add(start, []byte{
			0x01, 0x00, 0x01, 0x01, 0xff, 0xf0, 0x21, 0x00, 0x00, 0x11, 0x00, 0x01,
			0x02, 0xff, 0xff, 0x03, 0x00, 0x40, 0x0d, 0x00, 0x02, 0x31, 0x00, 0x01,
		})
	}
	f.Fuzz(func(t *testing.T, start uint64, ops []byte) {
		var w Window
		m := model{seen: map[uint64]bool{}}
		if got, want := w.Accept(start), m.accept(start); got != want {
			t.Fatalf("Accept(start %#x) = %v, model %v", start, got, want)
		}
		shifts := [4]uint{0, 3, 10, 32}
		offsets := [4]int64{0, -WindowSize, WindowSize, 1 << 31}
		for i := 0; i+3 <= len(ops); i += 3 {
			k := ops[i]
			d := int64(int16(binary.BigEndian.Uint16(ops[i+1:])))
			delta := d<<shifts[(k>>2)&3] + offsets[(k>>4)&3]
			target := m.highest + uint64(delta) // wraps: any uint64 is fair game

			check := func() (uint64, bool) {
				seq, ok := w.Check(Low(target))
				mseq, mok := m.check(Low(target))
				if seq != mseq || ok != mok {
					t.Fatalf("op %d: Check(%#x) with highest %#x = %#x, %v; model %#x, %v",
						i/3, Low(target), m.highest, seq, ok, mseq, mok)
				}
				return seq, ok
			}
			accept := func(seq uint64) {
				got, want := w.Accept(seq), m.accept(seq)
				if got != want {
					t.Fatalf("op %d: Accept(%#x) = %v, model %v", i/3, seq, got, want)
				}
			}
			switch k & 3 {
			case 0: // Check only, as for a packet whose ICV fails
				check()
			case 1: // the normal receive path
				if seq, ok := check(); ok {
					accept(seq)
				}
			case 2: // two copies checked before either is accepted
				seq, ok := check()
				check()
				if ok {
					accept(seq)
					accept(seq)
				}
			case 3: // a raw Accept of any full number, e.g. one checked long ago
				accept(target)
			}
			if w.Highest() != m.highest {
				t.Fatalf("op %d: Highest() = %#x, model %#x", i/3, w.Highest(), m.highest)
			}
		}
	})
}

func BenchmarkInOrder(b *testing.B) {
	var w Window
	var c Counter
	b.ReportAllocs()
	for b.Loop() {
		s, _ := c.Next()
		seq, ok := w.Check(Low(s))
		if !ok || !w.Accept(seq) {
			b.Fatalf("seq %d refused", s)
		}
	}
}

// BenchmarkOutOfOrder delivers each run of 512 numbers (half the window) in
// a scrambled order: stride 389 is odd, so it visits each number once.
func BenchmarkOutOfOrder(b *testing.B) {
	const run = WindowSize / 2
	var w Window
	var i uint64
	b.ReportAllocs()
	for b.Loop() {
		s := i/run*run + (i%run)*389%run + 1
		i++
		seq, ok := w.Check(Low(s))
		if !ok || !w.Accept(seq) {
			b.Fatalf("seq %d refused", s)
		}
	}
}
