package tunnel

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/openbtmm/btmm/client/tunnel/esp"
)

// TestPunch: a peer learned, or moved to a new endpoint, gets a NAT
// keepalive at once, before any traffic or timer: the packet that opens
// this side's NATs toward it (hole punching).
func TestPunch(t *testing.T) {
	n := startNode(t, "fd00::1", [32]byte{1})
	other := listen(t)
	defer other.Close()
	peer := Peer{ULA: netip.MustParseAddr("fd00::2"), Endpoints: []netip.AddrPort{other.LocalAddr().(*net.UDPAddr).AddrPort()}, Static: [32]byte{9}}
	expectKeepalive := func(what string, c *net.UDPConn) { t.Helper(); expectKeepalive(t, what, c) }
	n.t.SetPeer(peer)
	expectKeepalive("a new peer", other)
	moved := listen(t)
	defer moved.Close()
	peer.Endpoints = []netip.AddrPort{moved.LocalAddr().(*net.UDPAddr).AddrPort()}
	n.t.SetPeer(peer)
	expectKeepalive("a peer at a new endpoint", moved)
	n.t.SetPeer(peer)
	moved.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if k, _, err := moved.ReadFromUDP(make([]byte, 64)); err == nil {
		t.Errorf("the same endpoint again sent %d octets", k)
	}
}

func expectKeepalive(t *testing.T, what string, c *net.UDPConn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 64)
	k, _, err := c.ReadFromUDP(buf)
	if err != nil || k != 1 || buf[0] != esp.KeepaliveByte {
		t.Fatalf("%s: %x, %v; want one NAT keepalive at once", what, buf[:k], err)
	}
}

// TestKeepalivesAlongEveryPath: a peer with two paths gets a NAT
// keepalive along both as soon as it is known, and again along both
// every KeepaliveInterval, so that the path data does not take stays open
// for a fallback.
func TestKeepalivesAlongEveryPath(t *testing.T) {
	clk := newFakeClock()
	n := startNodeWith(t, "fd00::1", [32]byte{1}, func(c *Config) { c.Now = clk.Now })
	one, two := listen(t), listen(t)
	defer one.Close()
	defer two.Close()
	n.t.SetPeer(Peer{ULA: netip.MustParseAddr("fd00::2"), Static: [32]byte{9}, Endpoints: []netip.AddrPort{
		one.LocalAddr().(*net.UDPAddr).AddrPort(), two.LocalAddr().(*net.UDPAddr).AddrPort()}})
	expectKeepalive(t, "the first path, at once", one)
	expectKeepalive(t, "the second path, at once", two)
	clk.Advance(KeepaliveInterval)
	n.t.tick()
	expectKeepalive(t, "the first path, an interval later", one)
	expectKeepalive(t, "the second path, an interval later", two)
}
