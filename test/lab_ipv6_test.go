package test

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/openbtmm/btmm/client/daemon"
	"github.com/openbtmm/btmm/test/coredns"
	"github.com/openbtmm/btmm/test/lab"
)

// TestLabIPv6: two homes with global IPv6 beside their NATed IPv4, each
// router's filter letting in only what a host inside opened, or a PCP
// pinhole (routerA's). Each host publishes its global IPv6 address beside
// its mapped IPv4 endpoint; the
// tunnel's handshakes go along both paths and the first to answer
// carries the data. When the path in use breaks (its IP version cut at
// homeA), the tunnel carries on along the other, over the hosts' outer
// IPv6 addresses or over IPv4; and back when that one breaks in turn
// and the first works again. The hosts never stop.
func TestLabIPv6(t *testing.T) {
	// routerA speaks PCP, which opens a pinhole for the desktop's IPv6
	// address; routerB speaks NAT-PMP alone, which opens none.
	l := lab.Start(t, lab.Options{IPv6: true, NATProtocols: map[string]lab.NATProtocols{"routerB": {NATPMP: true}}}, "ping", "iputils-ping")
	dir := t.TempDir()
	// The server is reached over IPv4 alone: with IPv4 cut at homeA the
	// desktop cannot renew its records, and with the lab's usual 20 s
	// leases they would go (and the laptop drop the desktop) about as
	// soon as the tunnel falls back. Leases of 5 min, short of RFC 6281's
	// 30 min, outlast the cut.
	labServerLeases(t, l, dir, 5*time.Minute)
	lease := []string{"--set", "lease=5m"}
	start := time.Now()
	desktop, laptop := startPeers(t, l, dir, "desktop", lease, "laptop", lease)
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []*labClient{desktop, laptop} {
				st, _ := c.status()
				t.Logf("%s: tunnels %+v, drops %+v, peers %+v", c.name, st.Tunnels, st.TunnelDrops, st.Peers)
			}
			for _, r := range []string{"routerA", "routerB"} {
				out, _ := l.Exec(r, "conntrack", "-L", "-f", "ipv6", "-p", "udp").CombinedOutput()
				t.Logf("%s IPv6 conntrack:\n%s", r, out)
			}
		}
	})
	a6, b6 := l.Addr6("hostA"), l.Addr6("hostB")
	published6 := func(c *labClient, other string, addr netip.Addr) {
		t.Helper()
		c.waitStatus(other+"'s IPv6 endpoint", 10*time.Second, func(st daemon.Status) bool {
			for _, p := range st.Peers {
				if p.Host == other && p.Public6.Addr() == addr && p.Public6.Port() != 0 {
					return true
				}
			}
			return false
		})
	}
	published6(desktop, laptop.name, b6)
	published6(laptop, desktop.name, a6)
	if st, _ := laptop.status(); st.Public6 == "" || netip.MustParseAddrPort(st.Public6).Addr() != b6 {
		t.Errorf("laptop's status: IPv6 endpoint %q, want one on %v", st.Public6, b6)
	}
	laptopULA, desktopULA := desktop.peerULA(laptop.name), laptop.peerULA(desktop.name)
	pingWithin(t, l, desktop, laptopULA, 20*time.Second)
	path := func(c *labClient, ula netip.Addr) netip.AddrPort {
		tu, _ := c.tunnelTo(ula)
		return tu.Endpoint
	}
	first := path(desktop, laptopULA)
	t.Logf("both paths up: first ping reply through the tunnel %v after start, along %v", time.Since(start).Round(time.Millisecond), first)

	// The desktop has a pinhole and a stranger (the server) gets in; the
	// laptop has none, and only its peers' punched flows get in.
	stA := desktop.waitStatus("a PCP pinhole", 10*time.Second, func(st daemon.Status) bool { return st.Pinhole.Open })
	if stA.Pinhole.External != stA.Public6 || stA.Pinhole.Gateway != l.Gateway6("hostA").String() {
		t.Errorf("desktop's pinhole %+v, want its endpoint %s at %v", stA.Pinhole, stA.Public6, l.Gateway6("hostA"))
	}
	stB := laptop.waitStatus("no pinhole", 10*time.Second, func(st daemon.Status) bool { return st.Pinhole.Error != "" })
	if stB.Pinhole.Open {
		t.Errorf("laptop's pinhole %+v, want none", stB.Pinhole)
	}
	stranger := func(c *labClient, to string) bool {
		t.Helper()
		before, _ := c.status()
		if err := l.Go("server", func() error {
			conn, err := net.Dial("udp6", to)
			if err != nil {
				return err
			}
			defer conn.Close()
			_, err = conn.Write([]byte("??"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(deadline) {
			if st, err := c.status(); err == nil && st.TunnelDrops.InvalidUDP > before.TunnelDrops.InvalidUDP {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}
	if !stranger(desktop, stA.Public6) {
		t.Errorf("a datagram from the server to the desktop's pinhole %s did not arrive", stA.Public6)
	}
	if stranger(laptop, stB.Public6) {
		t.Errorf("a datagram from the server reached the laptop at %s, which has no pinhole", stB.Public6)
	}

	// Each path in its turn: the one in use breaks, the other carries
	// on; then the other way round.
	version := func(ep netip.AddrPort) int {
		if ep.Addr().Is4() {
			return 4
		}
		return 6
	}
	used := version(first)
	for range 2 {
		other := 10 - used
		if err := l.CutIP("routerA", other, false); err != nil {
			t.Fatal(err)
		}
		// Keepalives along the unused path keep the routers' filters
		// open for a fallback: give them a round after the mend.
		time.Sleep(time.Second)
		if err := l.CutIP("routerA", used, true); err != nil {
			t.Fatal(err)
		}
		cut := time.Now()
		pingWithin(t, l, desktop, laptopULA, 45*time.Second)
		t.Logf("IPv%d cut: ping through the tunnel again after %v (desktop → laptop along %v)",
			used, time.Since(cut).Round(time.Millisecond), path(desktop, laptopULA))
		pingWithin(t, l, laptop, desktopULA, 20*time.Second)
		for _, x := range []struct {
			c    *labClient
			ula  netip.Addr
			want netip.Addr
		}{{desktop, laptopULA, b6}, {laptop, desktopULA, a6}} {
			ep := path(x.c, x.ula)
			if other == 6 && ep.Addr() != x.want || other == 4 && !ep.Addr().Is4() {
				t.Errorf("with IPv%d cut %s sends along %v, want IPv%d", used, x.c.name, ep, other)
			}
		}
		used = other
	}

	human, err := exec.Command(coredns.Built(t, "btmm-client"), "status", "--socket", laptop.socket).CombinedOutput()
	if err != nil || !strings.Contains(string(human), "reachable over IPv6 at") || !strings.Contains(string(human), b6.String()) ||
		!strings.Contains(string(human), "no pinhole") {
		t.Errorf("btmm-client status: %v\n%s", err, human)
	}
}
