package lab

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestIPv6 builds the lab with IPv6 and checks what the IPv6 tests above
// it rely on: hosts reach the server over IPv6 from their own global
// addresses (no NAT66), while IPv4 is still masqueraded; a home router's
// filter keeps out a flow nobody inside opened, and lets it in once the
// host inside sent the same way (hole punching); CutIP cuts one IP
// version and mends it.
func TestIPv6(t *testing.T) {
	l := Start(t, Options{IPv6: true})
	t.Log("\n" + l.Topology())
	a6, b6, server6 := l.Addr6("hostA"), l.Addr6("hostB"), l.Addr6("server")
	if !a6.IsValid() || !b6.IsValid() || !server6.IsValid() || a6 == b6 {
		t.Fatalf("IPv6 addresses: hostA %v, hostB %v, server %v", a6, b6, server6)
	}
	echo4 := startEcho(t, l)
	echo6 := startEchoAt(t, l, server6)

	if got := echoFrom(t, l, "hostA", echo6); got.Addr() != a6 {
		t.Errorf("over IPv6 the server sees hostA as %v, want its own address %v", got, a6)
	}
	if got := echoFrom(t, l, "hostA", echo4); got.Addr() != l.WAN("routerA") {
		t.Errorf("over IPv4 the server sees hostA as %v, want routerA's %v", got, l.WAN("routerA"))
	}

	// hostB listens on 6000; hostA sends from 6001.
	rxB := listenUDP(t, l, "hostB", netip.AddrPortFrom(b6, 6000).String())
	rxA := listenUDP(t, l, "hostA", netip.AddrPortFrom(a6, 6001).String())
	sendFrom := func(rx *udpRx, to netip.AddrPort, what string) {
		t.Helper()
		if _, err := rx.c.WriteTo([]byte(what), net.UDPAddrFromAddrPort(to)); err != nil {
			t.Fatal(err)
		}
	}
	sendFrom(rxA, netip.AddrPortFrom(b6, 6000), "unasked")
	if d := rxB.recv(300 * time.Millisecond); d.ok {
		t.Fatalf("routerB let in a flow that nothing in homeB opened: %+v", d)
	}
	// hostB punches: its datagram to hostA opens routerB for hostA's
	// answer, and gets through routerA, which hostA's datagram opened.
	sendFrom(rxB, netip.AddrPortFrom(a6, 6001), "punch")
	if d := rxA.recv(time.Second); !d.ok || d.from != netip.AddrPortFrom(b6, 6000) {
		t.Fatalf("hostA got %+v, want hostB's punch from [%v]:6000", d, b6)
	}
	sendFrom(rxA, netip.AddrPortFrom(b6, 6000), "now let in")
	if d := rxB.recv(time.Second); !d.ok || d.data != "now let in" {
		t.Fatalf("after the punch hostB got %+v", d)
	}

	if err := l.CutIP("routerA", 4, true); err != nil {
		t.Fatal(err)
	}
	if c, err := l.Dial("hostA", "udp4", echo4.String(), time.Second); err == nil {
		c.Write([]byte("who am I"))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := c.Read(make([]byte, 100)); err == nil {
			t.Errorf("IPv4 cut, yet hostA got an answer of %d octets", n)
		}
		c.Close()
	}
	if got := echoFrom(t, l, "hostA", echo6); got.Addr() != a6 {
		t.Errorf("with IPv4 cut, IPv6 echo saw %v", got)
	}
	if err := l.CutIP("routerA", 6, true); err != nil {
		t.Fatal(err)
	}
	if err := l.CutIP("routerA", 4, false); err != nil {
		t.Fatal(err)
	}
	if got := echoFrom(t, l, "hostA", echo4); got.Addr() != l.WAN("routerA") {
		t.Errorf("IPv4 mended: the server sees %v", got)
	}
	if err := l.CutIP("routerA", 6, false); err != nil {
		t.Fatal(err)
	}
	if got := echoFrom(t, l, "hostA", echo6); got.Addr() != a6 {
		t.Errorf("IPv6 mended: the server sees %v", got)
	}
	if err := l.CutIP("cafe", 4, true); err == nil {
		t.Error("CutIP on the cafe's router (no NAT, no filter) did not fail")
	}
}
