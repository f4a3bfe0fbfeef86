package test

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/openbtmm/btmm/client/daemon"
	"github.com/openbtmm/btmm/test/coredns"
	"github.com/openbtmm/btmm/test/lab"
)

// The lab tests of hosts behind NATs that no mapping protocol opens: a
// home router behind a carrier's NAT (its PCP and NAT-PMP answer "network
// failure", the carrier speaks none). Such a host publishes the endpoint
// the server sees (the carrier's address and the port its NAT chose) and
// both hosts send to each other as they learn of each other, so that each
// side's packets open its NATs for the other's (hole punching).

// labPunchServer is labServer with a plain update listener as well (UDP
// and TCP 5301, advertised as _dns-update._udp): the second port of the
// server that tells a host whether its NAT maps per destination.
func labPunchServer(t *testing.T, l *lab.Lab, dir string) *coredns.Server {
	t.Helper()
	cert, key := writeLabCert(t, dir, l.Addr("server"))
	return startLabServer(t, l, dir, fmt.Sprintf(`tsig-update {
		tls :853 %s %s
		udp :5301
		tcp :5301
	}
	srv-discovery {
		update ns1.members.example.com. 853 tls
		update ns1.members.example.com. 5301
		llq    ns1.members.example.com. 5353 tls
	}
	llq {
		udp :5352
		tcp :5352
		tls :5353 %s %s
	}`, cert, key, cert, key))
}

// pingWithin pings to from from's namespace until a reply, or fails after
// within.
func pingWithin(t *testing.T, l *lab.Lab, from *labClient, to netip.Addr, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, err := l.Exec(from.ns, "ping", "-6", "-n", "-c", "1", "-W", "1", to.String()).CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping %s from %s: no reply within %v: %v\n%s", to, from.ns, within, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// observedAt waits until c publishes the endpoint the server sees, on the
// carrier's address, and returns its status.
func observedAt(t *testing.T, c *labClient, carrier netip.Addr, within time.Duration) daemon.Status {
	t.Helper()
	st := c.waitStatus("published at the endpoint the server sees", within, func(st daemon.Status) bool { return st.Mapping.Observed != "" })
	if ep, err := netip.ParseAddrPort(st.Mapping.Observed); err != nil || ep.Addr() != carrier {
		t.Fatalf("%s: observed endpoint %q, want one on the carrier's address %v", c.name, st.Mapping.Observed, carrier)
	}
	return st
}

// TestDoubleNATBothSides: both hosts behind a home router behind a
// carrier's NAT. Each publishes the endpoint the server sees, the tunnel
// comes up by hole punching, ping works both ways and an iperf3 stream
// runs through it.
func TestDoubleNATBothSides(t *testing.T) {
	l := lab.Start(t, lab.Options{DoubleNAT: true, DoubleNATBoth: true, Hosts: map[string]string{"hostC": "homeC", "hostD": "homeD"}},
		"ping", "iputils-ping", "iperf3", "iperf3")
	dir := t.TempDir()
	labPunchServer(t, l, dir)
	start := time.Now()
	desktop := startClient(t, l, dir, "hostC", "desktop")
	laptop := startClient(t, l, dir, "hostD", "laptop")
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []*labClient{desktop, laptop} {
				st, _ := c.status()
				t.Logf("%s: tunnels %+v, drops %+v", c.name, st.Tunnels, st.TunnelDrops)
				for _, r := range []string{"routerC", "isp", "routerD", "isp2"} {
					out, _ := l.Exec(r, "conntrack", "-L", "-p", "udp").CombinedOutput()
					t.Logf("%s conntrack:\n%s", r, out)
				}
			}
		}
	})
	stD := observedAt(t, desktop, l.WAN("isp"), 20*time.Second)
	stL := observedAt(t, laptop, l.WAN("isp2"), 20*time.Second)
	for _, st := range []daemon.Status{stD, stL} {
		if st.Mapping.ObservedMapping != "independent" || !strings.Contains(st.Mapping.Reach, "hole punching") {
			t.Errorf("%s: %+v, want a mapping independent of the destination", st.Host, st.Mapping)
		}
	}
	desktop.waitPeer(laptop.name, netip.MustParseAddrPort(stL.Mapping.Observed), 20*time.Second)
	laptop.waitPeer(desktop.name, netip.MustParseAddrPort(stD.Mapping.Observed), 20*time.Second)
	seen := time.Since(start)
	laptopULA, desktopULA := desktop.peerULA(laptop.name), laptop.peerULA(desktop.name)
	pingWithin(t, l, desktop, laptopULA, 20*time.Second)
	first := time.Since(start)
	pingWithin(t, l, laptop, desktopULA, 5*time.Second)
	t.Logf("double NAT on both sides: each sees the other %v after start, first ping reply through the tunnel %v after start",
		seen.Round(time.Millisecond), first.Round(time.Millisecond))

	// An iperf3 stream through the punched tunnel.
	srv := l.Exec(laptop.ns, "iperf3", "-s", "-1", "-B", laptopULA.String())
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	time.Sleep(300 * time.Millisecond)
	out, err := l.Exec(desktop.ns, "iperf3", "-c", laptopULA.String(), "-t", "2", "-f", "m").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "receiver") {
		t.Fatalf("iperf3 through the tunnel: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "receiver") {
			t.Logf("iperf3 through two double NATs: %s", strings.Join(strings.Fields(line), " "))
		}
	}

	// What the user sees.
	human, err := exec.Command(coredns.Built(t, "btmm-client"), "status", "--socket", laptop.socket).CombinedOutput()
	if err != nil || !strings.Contains(string(human), stL.Mapping.Observed+" (as the server sees it") || !strings.Contains(string(human), "hole punching") {
		t.Errorf("btmm-client status: %v\n%s", err, human)
	}
}

// TestDestinationDependentNAT: the carrier's NAT picks a random port per
// flow, so the server's two ports see two endpoints: status says that no
// host can reach this one directly, in words. The host still reaches a
// host that has a mapping (the desktop, behind a router with NAT-PMP),
// whose tunnel follows it to the port its packets come from.
func TestDestinationDependentNAT(t *testing.T) {
	l := lab.Start(t, lab.Options{DoubleNAT: true, RandomPorts: []string{"isp"}, Hosts: map[string]string{"hostA": "homeA", "hostC": "homeC"}},
		"ping", "iputils-ping")
	dir := t.TempDir()
	labPunchServer(t, l, dir)
	desktop := startClient(t, l, dir, "hostA", "desktop")
	laptop := startClient(t, l, dir, "hostC", "laptop")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("laptop:\n%s", laptop.out.String())
		}
	})
	st := laptop.waitStatus("told that its NAT maps per destination", 20*time.Second, func(st daemon.Status) bool { return st.Mapping.ObservedMapping == "dependent" })
	if !strings.Contains(st.Mapping.Reach, "no other host can reach this one directly") {
		t.Errorf("status says %q", st.Mapping.Reach)
	}
	human, err := exec.Command(coredns.Built(t, "btmm-client"), "status", "--socket", laptop.socket).CombinedOutput()
	if err != nil || !strings.Contains(string(human), "depends on the destination") {
		t.Errorf("btmm-client status: %v\n%s", err, human)
	}
	laptop.waitPeer(desktop.name, netip.AddrPortFrom(l.WAN("routerA"), 4500), 20*time.Second)
	desktopULA := laptop.peerULA(desktop.name)
	pingWithin(t, l, laptop, desktopULA, 20*time.Second)
}

// TestRoutedPrivateNetwork: the office's router routes a private subnet
// to the carrier's NAT, without NAT or a mapping protocol of its own (RFC
// 6281 §4.4.2, which Back to My Mac could not serve). Nothing answers the
// host's PCP or NAT-PMP (the router is no NAT), its own address is
// private: it publishes the endpoint the server sees, and a host at home
// reaches it through the tunnel, both ways.
func TestRoutedPrivateNetwork(t *testing.T) {
	l := lab.Start(t, lab.Options{DoubleNAT: true, RoutedPrivate: true, Hosts: map[string]string{"hostA": "homeA", "hostE": "office"}},
		"ping", "iputils-ping")
	dir := t.TempDir()
	labPunchServer(t, l, dir)
	start := time.Now()
	desktop := startClient(t, l, dir, "hostA", "desktop")
	office := startClient(t, l, dir, "hostE", "office")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("office:\n%s", office.out.String())
		}
	})
	st := observedAt(t, office, l.WAN("isp"), 20*time.Second)
	desktop.waitPeer(office.name, netip.MustParseAddrPort(st.Mapping.Observed), 20*time.Second)
	office.waitPeer(desktop.name, netip.AddrPortFrom(l.WAN("routerA"), 4500), 20*time.Second)
	seen := time.Since(start)
	pingWithin(t, l, desktop, desktop.peerULA(office.name), 20*time.Second)
	first := time.Since(start)
	pingWithin(t, l, office, office.peerULA(desktop.name), 5*time.Second)
	t.Logf("routed private network: the hosts see each other %v after start, first ping reply through the tunnel %v after start",
		seen.Round(time.Millisecond), first.Round(time.Millisecond))
}
