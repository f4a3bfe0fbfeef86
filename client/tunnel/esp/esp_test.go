package esp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
	"unsafe"

	"github.com/openbtmm/btmm/client/tunnel/replay"
)

var suites = []Suite{AES256GCM, ChaCha20Poly1305}

func testKeymat(seed byte) []byte {
	k := make([]byte, KeymatLen)
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

// pair returns an outbound and an inbound SA sharing one key, as the two
// ends of one direction of the tunnel.
func pair(t testing.TB, s Suite, noESN bool) (tx, rx *SA) {
	t.Helper()
	c := Config{SPI: 0x1234_5678, Suite: s, Keymat: testKeymat(7), NoESN: noESN}
	tx, err := NewSA(c)
	if err != nil {
		t.Fatal(err)
	}
	rx, err = NewSA(c)
	if err != nil {
		t.Fatal(err)
	}
	return tx, rx
}

func innerPacket(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
	if n > 0 {
		p[0] = 0x60 // looks like IPv6; the codec does not care
	}
	return p
}

// setCounter moves c to last = v, so that its next sequence number is v+1.
// replay.Counter has no setter, and counting to 2^64 is not an option; its
// only field is the uint64 last sequence number (checked by size here).
func setCounter(t testing.TB, c *replay.Counter, v uint64) {
	t.Helper()
	if unsafe.Sizeof(*c) != 8 {
		t.Fatal("replay.Counter layout changed; update setCounter")
	}
	*(*uint64)(unsafe.Pointer(c)) = v
	if got, _ := c.Next(); got != v+1 {
		t.Fatalf("setCounter: Next = %d, want %d", got, v+1)
	}
	*(*uint64)(unsafe.Pointer(c)) = v
}

func TestRoundTrip(t *testing.T) {
	for _, s := range suites {
		for _, noESN := range []bool{false, true} {
			tx, rx := pair(t, s, noESN)
			for n := 0; n <= 1500; n++ {
				inner := innerPacket(n)
				// In place, as the data path does it.
				buf := make([]byte, HeaderLen+n, SealedLen(n))
				copy(buf[HeaderLen:], inner)
				pkt, err := tx.Seal(buf[:0], buf[HeaderLen:])
				if err != nil {
					t.Fatal(err)
				}
				if len(pkt) != SealedLen(n) || len(pkt) > HeaderLen+n+Overhead || (len(pkt)-ICVLen)%4 != 0 {
					t.Fatalf("%v n=%d: sealed length %d", s, n, len(pkt))
				}
				if &pkt[0] != &buf[:1][0] {
					t.Fatalf("%v n=%d: Seal did not work in place", s, n)
				}
				if bytes.Contains(pkt, inner) && n >= 16 {
					t.Fatalf("%v n=%d: plaintext visible in packet", s, n)
				}
				got, nh, err := rx.Open(pkt[HeaderLen:HeaderLen], pkt)
				if err != nil || nh != NextHeaderIPv6 || !bytes.Equal(got, inner) {
					t.Fatalf("%v esn=%v n=%d: Open = %x, %d, %v", s, !noESN, n, got, nh, err)
				}
				if n > 0 && &got[0] != &pkt[HeaderLen] {
					t.Fatalf("%v n=%d: Open did not work in place", s, n)
				}
			}
			if h := rx.win.Highest(); h != 1501 {
				t.Fatalf("window highest = %d, want 1501", h)
			}
		}
	}
}

// TestSealCopies covers the non-in-place paths: a fresh dst, a dst with a
// prefix, and inner overlapping dst without headroom.
func TestSealCopies(t *testing.T) {
	for _, s := range suites {
		tx, rx := pair(t, s, false)
		inner := innerPacket(100)

		pkt, _ := tx.Seal(nil, inner)
		if got, _, err := rx.Open(nil, pkt); err != nil || !bytes.Equal(got, inner) {
			t.Fatalf("%v: fresh dst: %v", s, err)
		}

		prefix := []byte("udp-header")
		pkt, _ = tx.Seal(append([]byte(nil), prefix...), inner)
		if !bytes.HasPrefix(pkt, prefix) {
			t.Fatalf("%v: prefix lost", s)
		}
		out := append([]byte("x"), 'y')
		got, _, err := rx.Open(out, pkt[len(prefix):])
		if err != nil || !bytes.Equal(got[2:], inner) || string(got[:2]) != "xy" {
			t.Fatalf("%v: appended Open: %v", s, err)
		}

		// No headroom: inner sits where the header goes.
		buf := make([]byte, 0, 300)
		buf = append(buf, inner...)
		pkt, _ = tx.Seal(buf[:0], buf[:len(inner)])
		if got, _, err := rx.Open(nil, pkt); err != nil || !bytes.Equal(got, inner) {
			t.Fatalf("%v: overlapping inner: %v", s, err)
		}
	}
}

func TestPadding(t *testing.T) {
	for n, want := range []int{2, 1, 0, 3, 2, 1, 0, 3} {
		if got := padLen(n); got != want {
			t.Errorf("padLen(%d) = %d, want %d", n, got, want)
		}
	}
	tx, _ := pair(t, ChaCha20Poly1305, false)
	// Decrypt with the raw AEAD to look at the trailer Seal wrote.
	for n := range 8 {
		pkt, _ := tx.Seal(nil, innerPacket(n))
		pt := rawOpen(t, tx, pkt)
		pad := padLen(n)
		want := append(innerPacket(n), []byte{1, 2, 3}[:pad]...)
		want = append(want, byte(pad), NextHeaderIPv6)
		if !bytes.Equal(pt, want) {
			t.Fatalf("n=%d: plaintext %x, want %x", n, pt, want)
		}
	}
}

// rawOpen decrypts pkt with sa's AEAD, without any ESP processing.
func rawOpen(t *testing.T, sa *SA, pkt []byte) []byte {
	t.Helper()
	seq := uint64(pkt[4])<<24 | uint64(pkt[5])<<16 | uint64(pkt[6])<<8 | uint64(pkt[7])
	nonce := append(append([]byte(nil), sa.nonce[:SaltLen]...), pkt[8:16]...)
	pt, err := sa.aead.Open(nil, nonce, pkt[HeaderLen:], append([]byte(nil), sa.buildAAD(seq)...))
	if err != nil {
		t.Fatal(err)
	}
	return pt
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

// TestRFC7634Vector is the ESP example of RFC 7634 Appendix A, both ways:
// Open must recover the inner packet and Next Header 4 from the 120-octet
// packet, and sealing the inner packet with the vector's sequence number and
// IV must give the packet back byte for byte.
func TestRFC7634Vector(t *testing.T) {
	keymat := unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f a0a1a2a3")
	plaintext := unhex(`
		45000054a6f200004001e778c6336405c000020508005b7a3a080000553bec10
		0007362708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223
		2425262728292a2b2c2d2e2f303132333435363701020204`)
	ciphertext := unhex(`
		24039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c6
		14ee8099d52844eb61aa95dfab4c02f72aa71e7c4c4f64c9befe2facc638e8f3
		cbec163fac469b502773f6fb94e664da9165b82829f641e0`)
	tag := unhex("76aaa8266b7fb0f7b11b369907e1ad43")
	wire := unhex("01020304 00000005 1011121314151617")
	wire = append(append(wire, ciphertext...), tag...)
	if len(wire) != 120 {
		t.Fatalf("vector is %d octets", len(wire))
	}
	inner := plaintext[:len(plaintext)-4] // strip 01 02, pad length 02, NH 04

	c := Config{SPI: 0x01020304, Suite: ChaCha20Poly1305, Keymat: keymat, NoESN: true}
	rx, err := NewSA(c)
	if err != nil {
		t.Fatal(err)
	}
	got, nh, err := rx.Open(nil, wire)
	if err != nil || nh != NextHeaderIPv4 || !bytes.Equal(got, inner) {
		t.Fatalf("Open = %x, %d, %v", got, nh, err)
	}
	if _, _, err := rx.Open(nil, wire); err != ErrReplay {
		t.Fatalf("second Open: %v, want ErrReplay", err)
	}

	tx, _ := NewSA(c)
	sealed := tx.seal(nil, inner, 5, 0x1011121314151617, NextHeaderIPv4)
	if !bytes.Equal(sealed, wire) {
		t.Fatalf("seal:\n got %x\nwant %x", sealed, wire)
	}

	// The same key as an ESN SA puts the (zero) high half in the AAD and
	// must not verify the vector.
	c.NoESN = false
	esn, _ := NewSA(c)
	if _, _, err := esn.Open(nil, wire); err != ErrAuth {
		t.Fatalf("ESN SA on a 32-bit vector: %v, want ErrAuth", err)
	}
}

func TestFlippedBit(t *testing.T) {
	for _, s := range suites {
		tx, rx := pair(t, s, false)
		pkt, _ := tx.Seal(nil, innerPacket(61))
		next, _ := tx.Seal(nil, innerPacket(62))
		for bit := range len(pkt) * 8 {
			bad := bytes.Clone(pkt)
			bad[bit/8] ^= 1 << (bit % 8)
			_, _, err := rx.Open(nil, bad)
			switch {
			case bit < 32:
				if err != ErrSPI {
					t.Fatalf("%v bit %d (SPI): %v", s, bit, err)
				}
			case err != ErrAuth && err != ErrReplay:
				// A flipped sequence bit can land on a number the
				// window refuses outright; anything else is ErrAuth.
				t.Fatalf("%v bit %d: %v", s, bit, err)
			}
			if rx.win.Highest() != 0 {
				t.Fatalf("%v bit %d: window moved to %d", s, bit, rx.win.Highest())
			}
		}
		for i, p := range [][]byte{pkt, next} {
			if _, _, err := rx.Open(nil, p); err != nil {
				t.Fatalf("%v: good packet %d after forgeries: %v", s, i, err)
			}
		}
	}
}

func TestReplay(t *testing.T) {
	for _, s := range suites {
		tx, rx := pair(t, s, false)
		var pkts [][]byte
		for i := range 5 {
			p, _ := tx.Seal(nil, innerPacket(40+i))
			pkts = append(pkts, p)
		}
		// Out of order is fine; each only once.
		for _, i := range []int{1, 0, 4, 2} {
			if _, _, err := rx.Open(nil, pkts[i]); err != nil {
				t.Fatalf("%v: packet %d: %v", s, i, err)
			}
		}
		for _, i := range []int{0, 1, 2, 4} {
			if _, _, err := rx.Open(nil, pkts[i]); err != ErrReplay {
				t.Fatalf("%v: replay of %d: %v", s, i, err)
			}
		}
		if _, _, err := rx.Open(nil, pkts[3]); err != nil {
			t.Fatalf("%v: late packet 3: %v", s, err)
		}
		// Too old: beyond the window.
		old := pkts[0]
		for range replay.WindowSize + 1 {
			p, _ := tx.Seal(nil, nil)
			if _, _, err := rx.Open(nil, p); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := rx.Open(nil, old); err != ErrReplay && err != ErrAuth {
			t.Fatalf("%v: ancient packet: %v", s, err)
		}
	}
}

// sealRaw builds an authentic packet with an arbitrary plaintext, to test
// the trailer checks that Seal never violates.
func sealRaw(sa *SA, seq uint64, plaintext []byte) []byte {
	pkt := make([]byte, HeaderLen, HeaderLen+len(plaintext)+ICVLen)
	pkt[0], pkt[1], pkt[2], pkt[3] = byte(sa.spi>>24), byte(sa.spi>>16), byte(sa.spi>>8), byte(sa.spi)
	for i := range 4 {
		pkt[4+i] = byte(seq >> (24 - 8*i))
	}
	for i := range 8 {
		pkt[8+i] = byte(seq >> (56 - 8*i))
	}
	copy(sa.nonce[SaltLen:], pkt[8:16])
	return sa.aead.Seal(pkt, sa.nonce[:], plaintext, sa.buildAAD(seq))
}

func TestTrailer(t *testing.T) {
	cases := []struct {
		name string
		pt   []byte
		want error
		n    int // inner length on success
	}{
		{"ipv6", []byte{0x60, 1, 2, 3, 4, 5, 0, 41}, nil, 6},
		{"ipv4", []byte{0x45, 1, 2, 3, 4, 5, 0, 4}, nil, 6},
		{"empty", []byte{1, 2, 2, 41}, nil, 0},
		{"long pad", append(append([]byte{0x60, 9}, seqBytes(12)...), 12, 41), nil, 2},
		{"dummy", []byte{0x60, 1, 2, 3, 4, 5, 0, 59}, ErrDummy, 0},
		{"udp", []byte{0x60, 1, 2, 3, 4, 5, 0, 17}, ErrNextHeader, 0},
		{"nh 0", []byte{0x60, 0, 0, 0, 0, 0, 0, 0}, ErrNextHeader, 0},
		{"bad pad", []byte{0x60, 0, 0, 0, 0, 2, 2, 41}, ErrPadding, 0},
		{"zero pad", []byte{0x60, 0, 0, 0, 0, 0, 2, 41}, ErrPadding, 0},
		{"pad too long", []byte{1, 2, 3, 41}, ErrPadding, 0},
		{"pad 255", []byte{1, 2, 255, 41}, ErrPadding, 0},
	}
	for _, s := range suites {
		for i, c := range cases {
			_, rx := pair(t, s, false)
			pkt := sealRaw(rx, uint64(i+1), c.pt)
			got, nh, err := rx.Open(nil, pkt)
			if err != c.want {
				t.Errorf("%v %s: err %v, want %v", s, c.name, err, c.want)
				continue
			}
			if err == nil && (len(got) != c.n || nh != c.pt[len(c.pt)-1]) {
				t.Errorf("%v %s: got %x nh %d", s, c.name, got, nh)
			}
			// Authentic packets move the window even when the trailer is bad.
			if rx.win.Highest() != uint64(i+1) {
				t.Errorf("%v %s: window at %d", s, c.name, rx.win.Highest())
			}
		}
	}
}

func seqBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i + 1)
	}
	return b
}

func TestMalformed(t *testing.T) {
	tx, rx := pair(t, AES256GCM, false)
	pkt, _ := tx.Seal(nil, innerPacket(0))
	if len(pkt) != MinLen {
		t.Fatalf("empty inner seals to %d, MinLen is %d", len(pkt), MinLen)
	}
	for n := range MinLen {
		if _, _, err := rx.Open(nil, pkt[:n]); err != ErrMalformed {
			t.Fatalf("len %d: %v", n, err)
		}
	}
	long, _ := tx.Seal(nil, innerPacket(20))
	for _, cut := range []int{1, 2, 3} {
		if _, _, err := rx.Open(nil, long[:len(long)-cut]); err != ErrMalformed {
			t.Fatalf("cut %d: %v", cut, err)
		}
	}
	if _, _, err := rx.Open(nil, long[:len(long)-4]); err != ErrAuth {
		t.Fatalf("cut 4: %v", err)
	}
	other, _ := NewSA(Config{SPI: 0x1234_5679, Suite: AES256GCM, Keymat: testKeymat(7)})
	if _, _, err := other.Open(nil, pkt); err != ErrSPI {
		t.Fatalf("wrong SA: %v", err)
	}
	if _, _, err := rx.Open(nil, pkt); err != nil {
		t.Fatalf("good packet: %v", err)
	}
}

func TestNewSA(t *testing.T) {
	for _, spi := range []uint32{0, 1, 255} {
		if _, err := NewSA(Config{SPI: spi, Suite: AES256GCM, Keymat: testKeymat(0)}); err == nil {
			t.Errorf("SPI %d accepted", spi)
		}
	}
	for _, s := range suites {
		sa, err := NewSA(Config{SPI: 256, Suite: s, Keymat: testKeymat(0)})
		if err != nil || sa.SPI() != 256 || sa.Suite() != s || !sa.ESN() {
			t.Errorf("%v: %v", s, err)
		}
		for _, n := range []int{0, 20, 32, 35, 37} {
			if _, err := NewSA(Config{SPI: 256, Suite: s, Keymat: make([]byte, n)}); err == nil {
				t.Errorf("%v: %d-octet keymat accepted", s, n)
			}
		}
	}
	if _, err := NewSA(Config{SPI: 256, Suite: 0, Keymat: testKeymat(0)}); err == nil {
		t.Error("suite 0 accepted")
	}
	if _, err := NewSA(Config{SPI: 256, Suite: 3, Keymat: testKeymat(0)}); err == nil {
		t.Error("suite 3 accepted")
	}
	// Different salts must give different packets for the same key.
	a := testKeymat(0)
	b := bytes.Clone(a)
	b[KeymatLen-1] ^= 1
	sa, _ := NewSA(Config{SPI: 256, Suite: AES256GCM, Keymat: a})
	sb, _ := NewSA(Config{SPI: 256, Suite: AES256GCM, Keymat: b})
	pa, _ := sa.Seal(nil, innerPacket(32))
	pb, _ := sb.Seal(nil, innerPacket(32))
	if bytes.Equal(pa, pb) {
		t.Error("salt ignored")
	}
}

func TestExhausted(t *testing.T) {
	for _, s := range suites {
		for _, c := range []struct {
			noESN bool
			last  uint64
		}{{false, math.MaxUint64 - 2}, {true, math.MaxUint32 - 2}} {
			tx, rx := pair(t, s, c.noESN)
			setCounter(t, &tx.ctr, c.last)
			// The receiver's window must be near the end too, or it
			// would infer another high half.
			rx.win.Accept(c.last)
			for i := range 2 {
				pkt, err := tx.Seal(nil, innerPacket(10))
				if err != nil {
					t.Fatalf("%v esn=%v: packet %d: %v", s, !c.noESN, i, err)
				}
				if _, _, err := rx.Open(nil, pkt); err != nil {
					t.Fatalf("%v esn=%v: open %d: %v", s, !c.noESN, i, err)
				}
			}
			for range 3 {
				dst := []byte("keep")
				out, err := tx.Seal(dst, innerPacket(10))
				if err != ErrExhausted || string(out) != "keep" {
					t.Fatalf("%v esn=%v: after the last number: %q %v", s, !c.noESN, out, err)
				}
			}
		}
	}
}

// TestESNBoundary sends across 2^32: the wire carries 0xffff_fffe, 0xffff_ffff,
// 0, 1, ... and the receiver must infer the high half, which only the AAD
// carries.
func TestESNBoundary(t *testing.T) {
	for _, s := range suites {
		tx, rx := pair(t, s, false)
		start := uint64(1)<<32 - 4
		setCounter(t, &tx.ctr, start)
		rx.win.Accept(start)
		var pkts [][]byte
		for range 8 {
			p, _ := tx.Seal(nil, innerPacket(80))
			pkts = append(pkts, p)
		}
		if lo := pkts[4][4:8]; !bytes.Equal(lo, []byte{0, 0, 0, 1}) {
			t.Fatalf("wire seq after 2^32 = %x", lo)
		}
		// Reordered across the boundary.
		for _, i := range []int{0, 4, 1, 2, 3, 6, 5, 7} {
			if _, _, err := rx.Open(nil, pkts[i]); err != nil {
				t.Fatalf("%v: packet %d: %v", s, i, err)
			}
		}
		if h := rx.win.Highest(); h != start+8 {
			t.Fatalf("%v: highest %#x", s, h)
		}

		// A receiver that has not reached 2^32 infers high half 0 for
		// these; the AAD then differs and the ICV fails.
		_, fresh := pair(t, s, false)
		if _, _, err := fresh.Open(nil, pkts[5]); err != ErrAuth {
			t.Fatalf("%v: wrong high half: %v", s, err)
		}
		if fresh.win.Highest() != 0 {
			t.Fatalf("%v: window moved", s)
		}
	}
}

func TestDropCounts(t *testing.T) {
	var c DropCounts
	for _, err := range []error{ErrAuth, ErrAuth, ErrReplay, nil, errors.New("x"), ErrExhausted} {
		c.Add(err)
	}
	if c.Get(ErrAuth) != 2 || c.Get(ErrReplay) != 1 || c.Get(ErrDummy) != 0 || c.Get(Drop(200)) != 0 {
		t.Fatalf("counts %v", c)
	}
	for d := ErrMalformed; d < numDrops; d++ {
		if !strings.HasPrefix(d.Error(), "esp: ") || d.Error() == "esp: drop" {
			t.Errorf("%d: %q", d, d.Error())
		}
		if !errors.Is(error(d), d) {
			t.Errorf("errors.Is(%v)", d)
		}
	}
}

// TestSealDummy: a dummy packet is a well-formed ESP packet (4-octet
// aligned trailer, NH 59) that takes a sequence number, authenticates,
// moves the window and is reported as ErrDummy, never as data.
func TestSealDummy(t *testing.T) {
	for _, s := range suites {
		tx, rx := pair(t, s, false)
		pkt, err := tx.SealDummy(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(pkt) != SealedLen(0) || (len(pkt)-HeaderLen-ICVLen)%4 != 0 {
			t.Errorf("%v: dummy is %d octets", s, len(pkt))
		}
		if _, _, err := rx.Open(nil, pkt); err != ErrDummy {
			t.Errorf("%v: Open: %v, want ErrDummy", s, err)
		}
		if rx.win.Highest() != 1 {
			t.Errorf("%v: window at %d after the dummy", s, rx.win.Highest())
		}
		if _, _, err := rx.Open(nil, pkt); err != ErrReplay {
			t.Errorf("%v: replayed dummy: %v, want ErrReplay", s, err)
		}
		data, _ := tx.Seal(nil, []byte{0x60, 0, 0, 0})
		if _, _, err := rx.Open(nil, data); err != nil {
			t.Errorf("%v: packet after the dummy: %v", s, err)
		}
	}
}
