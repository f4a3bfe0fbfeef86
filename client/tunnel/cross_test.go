package tunnel

import (
	"testing"
	"time"
)

// TestCrossingHandshakes: both ends initiate at once (each has a packet
// for the other before any SA); each ends up sending on one pair and
// receiving on the other's partner. Traffic must keep flowing both ways
// after OldSAGrace, when the pairs each side replaced are dropped.
func TestCrossingHandshakes(t *testing.T) {
	goroutineLeakCheck(t)
	clk := newFakeClock()
	a, b := pairWithClock(t, clk)
	p := ipv6UDP(a.ula, b.ula, []byte("from a"))
	q := ipv6UDP(b.ula, a.ula, []byte("from b"))
	a.tun.in <- p
	b.tun.in <- q
	expectPacket(t, b, p)
	expectPacket(t, a, q)
	// Steps shorter than KeepaliveTimeout, with data both ways in each,
	// so that no timer starts another handshake: this is about the pairs
	// the crossing left, past OldSAGrace.
	for range 4 {
		clk.Advance(KeepaliveTimeout - time.Second)
		a.t.tick()
		b.t.tick()
		p := ipv6UDP(a.ula, b.ula, []byte("later from a"))
		a.tun.in <- p
		expectPacket(t, b, p)
		q := ipv6UDP(b.ula, a.ula, []byte("later from b"))
		b.tun.in <- q
		expectPacket(t, a, q)
	}
}
