package tunnel

import (
	"testing"
	"time"

	"github.com/openbtmm/btmm/client/tunnel/handshake"
)

// TestNudgeRetransmits: a initiates to b before b knows of a (a host that
// restarted and initiated from its cached peers before its records
// reached b), so b refuses. When b learns of a, its punch makes a send the
// initiation again at once, long before RekeyTimeout: the staged packet
// arrives with the clock a second on.
func TestNudgeRetransmits(t *testing.T) {
	goroutineLeakCheck(t)
	clk := newFakeClock()
	var psk [32]byte
	onClock := func(c *Config) { c.Now = clk.Now }
	a := startNodeWith(t, "fd00::a", psk, onClock)
	b := startNodeWith(t, "fd00::b", psk, onClock)
	a.t.SetPeer(b.peer())
	p := ipv6UDP(a.ula, b.ula, []byte("before b knew a"))
	a.tun.in <- p
	waitFor(t, "b to refuse the initiation", func() bool { return b.t.Counters().BadHandshake > 0 })
	expectNothing(t, b, 50*time.Millisecond)

	clk.Advance(time.Second) // well short of RekeyTimeout
	b.t.SetPeer(a.peer())
	expectPacket(t, b, p)
	if s := status(t, a, b.ula); s.HandshakeTimeouts != 0 || !s.HasSA {
		t.Errorf("a: %+v", s)
	}
}

// TestRestartedPeer: b restarts (same key, same port) and so has none of
// its SAs; a goes on sending on its old one. b's first look at ESP for an
// SA it does not have starts a handshake at once, and the initiator's
// dummy packet confirms the new pair to a, so a's next packet gets
// through: no timer needed (the clock stands still).
func TestRestartedPeer(t *testing.T) {
	goroutineLeakCheck(t)
	clk := newFakeClock()
	var psk [32]byte
	onClock := func(c *Config) { c.Now = clk.Now }
	a := startNodeWith(t, "fd00::a", psk, onClock)
	bkp, err := handshake.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := startNodeWith(t, "fd00::b", psk, func(c *Config) { c.Now, c.Static = clk.Now, bkp })
	b.kp = bkp
	a.t.SetPeer(b.peer())
	b.t.SetPeer(a.peer())
	establish(t, a, b)

	// b restarts on the same port, with the same key.
	port := b.t.Port()
	b.t.Close()
	b2 := startNodeWith(t, "fd00::b", psk, func(c *Config) { c.Now, c.Static, c.Port = clk.Now, bkp, port })
	b2.kp = bkp
	b2.t.SetPeer(a.peer())
	clk.Advance(time.Second)

	a.tun.in <- ipv6UDP(a.ula, b.ula, []byte("on the old SA: lost"))
	waitFor(t, "b2's new handshake", func() bool { return status(t, b2, a.ula).HasSA })
	q := ipv6UDP(a.ula, b.ula, []byte("on the new SA"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.tun.in <- q
		select {
		case got := <-b2.tun.out:
			if string(got) != string(q) {
				t.Fatalf("b2 got %x", got)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("a's packets never reached the restarted b")
		}
	}
}
