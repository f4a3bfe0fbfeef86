package tunnel

import (
	"net/netip"
	"testing"
	"time"
)

// pathsPair is a and b on clk, each knowing the other along two paths,
// each path a proxy that can be cut: px[0] first in preference.
func pathsPair(t *testing.T, clk *fakeClock) (a, b *node, px [2]*proxy) {
	var psk [32]byte
	copy(psk[:], "shared account secret, derived..")
	onClock := func(c *Config) { c.Now = clk.Now }
	a = startNodeWith(t, "fd00::a", psk, onClock)
	b = startNodeWith(t, "fd00::b", psk, onClock)
	for i := range px {
		px[i] = startProxy(t, a.addr(), b.addr())
	}
	eps := []netip.AddrPort{px[0].addr(), px[1].addr()}
	a.t.SetPeer(Peer{ULA: b.ula, Endpoints: eps, Static: b.kp.Public})
	b.t.SetPeer(Peer{ULA: a.ula, Endpoints: eps, Static: a.kp.Public})
	return a, b, px
}

// TestPathsFirstAnswerWins: the preferred path is dead from the start;
// the handshake goes along both, and the data takes the one that
// answered.
func TestPathsFirstAnswerWins(t *testing.T) {
	goroutineLeakCheck(t)
	clk := newFakeClock()
	a, b, px := pathsPair(t, clk)
	px[0].cut.Store(true)
	if got := status(t, a, b.ula).Endpoint; got != px[0].addr() {
		t.Fatalf("before any handshake a sends to %v, want the preferred path %v", got, px[0].addr())
	}
	establish(t, a, b)
	if got := status(t, a, b.ula).Endpoint; got != px[1].addr() {
		t.Errorf("a sends to b along %v, want %v (the path that answered)", got, px[1].addr())
	}
	r := ipv6UDP(b.ula, a.ula, []byte("back along the live path"))
	b.tun.in <- r
	expectPacket(t, a, r)
}

// TestPathsFallback: the path in use dies; data goes out and nothing
// comes back for NewHandshakeAfter, so a new handshake goes along every
// path and the traffic moves to the one that answers, with the SAs of
// the new handshake; it moves back when that one dies and the first
// lives again.
func TestPathsFallback(t *testing.T) {
	goroutineLeakCheck(t)
	clk := newFakeClock()
	a, b, px := pathsPair(t, clk)
	px[1].cut.Store(true)
	establish(t, a, b)
	if got := status(t, a, b.ula).Endpoint; got != px[0].addr() {
		t.Fatalf("a sends along %v, want %v", got, px[0].addr())
	}
	for _, step := range []struct{ dies, lives int }{{0, 1}, {1, 0}} {
		px[step.dies].cut.Store(true)
		px[step.lives].cut.Store(false)
		a.tun.in <- ipv6UDP(a.ula, b.ula, []byte("lost"))
		expectNothing(t, b, 50*time.Millisecond)
		first := status(t, a, b.ula).LastHandshake

		clk.Advance(NewHandshakeAfter - time.Second)
		a.t.tick()
		if status(t, a, b.ula).HandshakePending {
			t.Fatalf("a handshake before NewHandshakeAfter")
		}
		clk.Advance(time.Second)
		a.t.tick()
		waitFor(t, "a new handshake", func() bool { return status(t, a, b.ula).LastHandshake.After(first) })
		if got := status(t, a, b.ula).Endpoint; got != px[step.lives].addr() {
			t.Fatalf("after the fallback a sends along %v, want %v", got, px[step.lives].addr())
		}
		q := ipv6UDP(a.ula, b.ula, []byte("along the other path"))
		a.tun.in <- q
		expectPacket(t, b, q)
		r := ipv6UDP(b.ula, a.ula, []byte("and back"))
		b.tun.in <- r
		expectPacket(t, a, r)
		if got := status(t, b, a.ula).Endpoint; got != px[step.lives].addr() {
			t.Errorf("b sends along %v, want %v", got, px[step.lives].addr())
		}
	}
}

// TestPassiveKeepalive: a one-way stream is not a dead path. The
// receiver, which has nothing to send, sends an authenticated dummy
// packet after KeepaliveTimeout, and the sender starts no handshake.
func TestPassiveKeepalive(t *testing.T) {
	goroutineLeakCheck(t)
	clk := newFakeClock()
	a, b := pairWithClock(t, clk)
	establish(t, a, b)
	hs := status(t, a, b.ula).LastHandshake
	for range 3 { // 3 × KeepaliveTimeout > NewHandshakeAfter
		q := ipv6UDP(a.ula, b.ula, []byte("one way"))
		a.tun.in <- q
		expectPacket(t, b, q)
		clk.Advance(KeepaliveTimeout)
		b.t.tick()
		pa := peerOf(a, b.ula)
		waitFor(t, "b's dummy packet", func() bool { return pa.awaitingSince.Load() == 0 })
		a.t.tick()
	}
	clk.Advance(NewHandshakeAfter)
	a.t.tick()
	if s := status(t, a, b.ula); s.HandshakePending || !s.LastHandshake.Equal(hs) {
		t.Errorf("a one-way stream made a handshake (pending %v)", s.HandshakePending)
	}
	expectNothing(t, a, 20*time.Millisecond) // dummies are delivered nowhere
}
