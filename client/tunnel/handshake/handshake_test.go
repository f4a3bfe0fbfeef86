package handshake

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

var (
	ulaI = netip.MustParseAddr("fd12:3456:789a::1")
	ulaR = netip.MustParseAddr("fd12:3456:789a::2")
)

// fakeClock advances by one second on every call so that successive
// initiations get strictly increasing timestamps.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

type pair struct {
	ci, cr Config
	resp   *Responder
}

func newPair(t testing.TB) *pair {
	t.Helper()
	ki, err := GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	psk := [32]byte{1, 2, 3, 4}
	clk := newClock()
	p := &pair{
		ci: Config{Static: ki, PSK: psk, Now: clk.Now},
		cr: Config{Static: kr, PSK: psk, Now: clk.Now},
	}
	p.resp, err = NewResponder(p.cr, func(k [32]byte) bool { return k == ki.Public })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHandshake(t *testing.T) {
	p := newPair(t)
	msg, st, err := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg) != minInitiationLen+1 {
		t.Errorf("initiation is %d octets, want %d", len(msg), minInitiationLen+1)
	}
	reply, rr, err := p.resp.Respond(msg, ulaR, 0x2000)
	if err != nil {
		t.Fatal(err)
	}
	if len(reply) != ResponseLen {
		t.Errorf("response is %d octets, want %d", len(reply), ResponseLen)
	}
	ri, err := st.Finish(reply)
	if err != nil {
		t.Fatal(err)
	}
	if ri.Send != rr.Recv || ri.Recv != rr.Send {
		t.Fatalf("keys differ:\ninitiator %+v\nresponder %+v", ri, rr)
	}
	if ri.Send.KeyMat == ri.Recv.KeyMat {
		t.Error("both directions have the same key")
	}
	if ri.Send.SPI != 0x2000 || ri.Recv.SPI != 0x1000 {
		t.Errorf("initiator SPIs send %#x recv %#x", ri.Send.SPI, ri.Recv.SPI)
	}
	if ri.Suite != SuiteAES256GCM || rr.Suite != SuiteAES256GCM {
		t.Errorf("suite %v / %v", ri.Suite, rr.Suite)
	}
	if rr.PeerStatic != p.ci.Static.Public || ri.PeerStatic != p.cr.Static.Public {
		t.Error("peer static keys not delivered")
	}
	if rr.PeerULA != ulaI || ri.PeerULA != ulaR {
		t.Errorf("ULAs: responder got %v, initiator got %v", rr.PeerULA, ri.PeerULA)
	}
	if !ri.Confirmed || rr.Confirmed {
		t.Error("Confirmed: want initiator true, responder false")
	}
	if _, err := st.Finish(reply); !errors.Is(err, ErrUsed) {
		t.Errorf("second Finish: %v", err)
	}
}

func TestSuiteNegotiation(t *testing.T) {
	p := newPair(t)
	p.ci.Suites = []Suite{SuiteChaCha20Poly1305}
	msg, st, err := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	reply, rr, err := p.resp.Respond(msg, ulaR, 0x2000)
	if err != nil {
		t.Fatal(err)
	}
	ri, err := st.Finish(reply)
	if err != nil {
		t.Fatal(err)
	}
	if ri.Suite != SuiteChaCha20Poly1305 || rr.Suite != ri.Suite {
		t.Errorf("suite %v / %v", ri.Suite, rr.Suite)
	}

	// No common suite.
	p.cr.Suites = []Suite{SuiteAES256GCM}
	r2, _ := NewResponder(p.cr, nil)
	msg, _, _ = Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	if _, _, err := r2.Respond(msg, ulaR, 0x2000); !errors.Is(err, ErrNoSuite) {
		t.Errorf("no common suite: %v", err)
	}
}

func TestWrongPSK(t *testing.T) {
	p := newPair(t)
	other := p.cr
	other.PSK[0] ^= 1 // a host of another user, same static key
	resp, _ := NewResponder(other, nil)
	msg, st, err := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	reply, rr, err := resp.Respond(msg, ulaR, 0x2000)
	if err != nil {
		// Also acceptable, but with IKpsk2 the responder cannot tell yet.
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("Respond: %v", err)
		}
		return
	}
	ri, err := st.Finish(reply)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("Finish with wrong PSK: %v", err)
	}
	if ri != (Result{}) {
		t.Error("keys returned on failure")
	}
	if rr.Confirmed {
		t.Error("responder result claims confirmation")
	}
}

func TestWrongResponderStatic(t *testing.T) {
	p := newPair(t)
	wrong, _ := GenerateKeyPair(nil)
	msg, _, err := Initiate(p.ci, wrong.Public, ulaI, 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.resp.Respond(msg, ulaR, 0x2000); !errors.Is(err, ErrAuth) {
		t.Fatalf("Respond: %v", err)
	}
	// Even with mac1 made right, the Noise layer must refuse it.
	fixed := remac(msg, p.cr.Static.Public)
	if _, _, err := p.resp.Respond(fixed, ulaR, 0x2000); !errors.Is(err, ErrAuth) {
		t.Fatalf("Respond with valid mac1: %v", err)
	}
}

// remac recomputes mac1 for responder pub (and clears mac2).
func remac(msg []byte, pub [32]byte) []byte {
	out := bytes.Clone(msg)
	n := len(out)
	m := mac(mac1Key(pub), out[:n-2*macLen])
	copy(out[n-2*macLen:], m[:])
	clear(out[n-macLen:])
	return out
}

func TestNotAllowed(t *testing.T) {
	p := newPair(t)
	stranger, _ := GenerateKeyPair(nil)
	cfg := p.ci
	cfg.Static = stranger
	msg, _, _ := Initiate(cfg, p.cr.Static.Public, ulaI, 0x1000)
	if _, _, err := p.resp.Respond(msg, ulaR, 0x2000); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("Respond: %v", err)
	}
	if len(p.resp.timestamps) != 0 {
		t.Error("stranger got a replay table entry")
	}
}

func TestReplay(t *testing.T) {
	p := newPair(t)
	old, _, _ := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	msg, _, _ := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	if _, _, err := p.resp.Respond(msg, ulaR, 0x2000); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.resp.Respond(msg, ulaR, 0x2000); !errors.Is(err, ErrReplay) {
		t.Errorf("same initiation twice: %v", err)
	}
	if _, _, err := p.resp.Respond(old, ulaR, 0x2000); !errors.Is(err, ErrReplay) {
		t.Errorf("older initiation: %v", err)
	}
	newer, _, _ := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	if _, _, err := p.resp.Respond(newer, ulaR, 0x2000); err != nil {
		t.Errorf("newer initiation: %v", err)
	}
	// A restarted responder has forgotten; replay costs it no keys though.
	p.resp.Forget(p.ci.Static.Public)
	if _, _, err := p.resp.Respond(msg, ulaR, 0x2000); err != nil {
		t.Errorf("after Forget: %v", err)
	}
}

func TestReplayConcurrent(t *testing.T) {
	p := newPair(t)
	msg, _, _ := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Go(func() {
			if _, _, err := p.resp.Respond(msg, ulaR, 0x2000); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Errorf("%d of 8 copies accepted, want 1", ok)
	}
}

func TestReplayTableBound(t *testing.T) {
	p := newPair(t)
	r, _ := NewResponder(p.cr, nil)
	r.maxEntries = 4
	for range 10 {
		kp, _ := GenerateKeyPair(nil)
		cfg := p.ci
		cfg.Static = kp
		msg, _, _ := Initiate(cfg, p.cr.Static.Public, ulaI, 0x1000)
		if _, _, err := r.Respond(msg, ulaR, 0x2000); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.timestamps) != 4 {
		t.Errorf("table has %d entries, want 4", len(r.timestamps))
	}
}

func TestTamper(t *testing.T) {
	p := newPair(t)
	msg, st, _ := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	for i := range len(msg) - macLen { // Respond ignores mac2 (see RespondFrom)
		for _, bit := range []byte{1, 0x80} {
			m := bytes.Clone(msg)
			m[i] ^= bit
			if _, _, err := p.resp.Respond(m, ulaR, 0x2000); err == nil {
				t.Fatalf("initiation with octet %d flipped accepted", i)
			}
			// Past the header, recomputing mac1 must not help.
			if i >= headerLen && i < len(m)-2*macLen {
				if _, _, err := p.resp.Respond(remac(m, p.cr.Static.Public), ulaR, 0x2000); !errors.Is(err, ErrAuth) {
					t.Fatalf("octet %d flipped, mac1 fixed: %v", i, err)
				}
			}
		}
	}
	for n := range len(msg) {
		// Lengths of shorter suite lists are well formed; mac1 catches them.
		if _, _, err := p.resp.Respond(msg[:n], ulaR, 0x2000); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAuth) {
			t.Fatalf("initiation truncated to %d: %v", n, err)
		}
	}
	reply, rr, err := p.resp.Respond(msg, ulaR, 0x2000)
	if err != nil {
		t.Fatal(err)
	}
	for i := range reply {
		if i >= 1 && i < 5 {
			continue // the responder's index is an unauthenticated hint
		}
		m := bytes.Clone(reply)
		m[i] ^= 0x10
		if res, err := st.Finish(m); err == nil || res != (Result{}) {
			t.Fatalf("response with octet %d flipped accepted", i)
		}
	}
	for n := range len(reply) {
		if _, err := st.Finish(reply[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("response truncated to %d: %v", n, err)
		}
	}
	// Forged responses must not have spoiled the pending initiation.
	ri, err := st.Finish(reply)
	if err != nil {
		t.Fatalf("genuine response after forgeries: %v", err)
	}
	if ri.Send != rr.Recv || ri.Recv != rr.Send {
		t.Fatal("keys differ after forgeries")
	}
}

func TestBadArguments(t *testing.T) {
	p := newPair(t)
	if _, _, err := Initiate(p.ci, p.cr.Static.Public, ulaI, 255); err == nil {
		t.Error("SPI 255 accepted")
	}
	if _, _, err := Initiate(p.ci, p.cr.Static.Public, netip.MustParseAddr("2001:db8::1"), 0x1000); err == nil {
		t.Error("non-ULA accepted")
	}
	if _, _, err := Initiate(p.ci, [32]byte{}, ulaI, 0x1000); err == nil {
		t.Error("all-zero (low order) peer key accepted")
	}
	msg, _, _ := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	if _, _, err := p.resp.Respond(msg, ulaR, 0); err == nil {
		t.Error("responder SPI 0 accepted")
	}
}

func TestPublicKeyEncoding(t *testing.T) {
	kp, _ := GenerateKeyPair(nil)
	s := EncodePublicKey(kp.Public)
	k, err := ParsePublicKey(s)
	if err != nil || k != kp.Public {
		t.Fatalf("round trip: %v", err)
	}
	if k, err := ParsePublicKey(s[:43]); err != nil || k != kp.Public {
		t.Errorf("unpadded: %v", err)
	}
	if _, err := ParsePublicKey("AAAA"); err == nil {
		t.Error("short key accepted")
	}
	kp2, _ := KeyPairFromPrivate(kp.Private)
	if kp2 != kp {
		t.Error("KeyPairFromPrivate differs")
	}
}

func TestTAI64N(t *testing.T) {
	a := tai64n(time.Unix(100, 999_999_999))
	b := tai64n(time.Unix(101, 0))
	if !(string(a[:]) < string(b[:])) {
		t.Error("not monotonic across a second")
	}
	if a[0] != 0x40 {
		t.Errorf("TAI64 label: %x", a[:8])
	}
}

func BenchmarkHandshake(b *testing.B) {
	p := newPair(b)
	b.ReportAllocs()
	for b.Loop() {
		msg, st, err := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
		if err != nil {
			b.Fatal(err)
		}
		reply, _, err := p.resp.Respond(msg, ulaR, 0x2000)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Finish(reply); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDefaultSuites: both suites are always offered (any two hosts agree),
// with AES-GCM first only where the CPU accelerates it.
func TestDefaultSuites(t *testing.T) {
	if got := defaultSuites(true); !slices.Equal(got, []Suite{SuiteAES256GCM, SuiteChaCha20Poly1305}) {
		t.Errorf("with AES hardware: %v", got)
	}
	if got := defaultSuites(false); !slices.Equal(got, []Suite{SuiteChaCha20Poly1305, SuiteAES256GCM}) {
		t.Errorf("without AES hardware: %v", got)
	}
	if !slices.Equal(DefaultSuites, defaultSuites(hasAESGCMHardware())) {
		t.Errorf("DefaultSuites %v", DefaultSuites)
	}
}

func TestParseSuites(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []Suite
		err  bool
	}{
		{"", nil, false},
		{"  ", nil, false},
		{"AES-256-GCM", []Suite{SuiteAES256GCM}, false},
		{"chacha20-poly1305, aes-256-gcm", []Suite{SuiteChaCha20Poly1305, SuiteAES256GCM}, false},
		{"aes-128-gcm", nil, true},
		{"aes-256-gcm,AES-256-GCM", nil, true},
		{"aes-256-gcm,", nil, true},
	} {
		got, err := ParseSuites(c.in)
		if (err != nil) != c.err || !slices.Equal(got, c.want) {
			t.Errorf("ParseSuites(%q) = %v, %v", c.in, got, err)
		}
	}
}
