package test

import (
	"encoding/json"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/openbtmm/btmm/client/daemon"
	"github.com/openbtmm/btmm/client/portmap"
	"github.com/openbtmm/btmm/test/coredns"
	"github.com/openbtmm/btmm/test/lab"
)

// The lab tests of NAT traversal by each port mapping protocol: both
// home routers answer one protocol only (lab.Options.NATProtocols), and
// the client, which asks PCP, then NAT-PMP, then UPnP IGD, must find it.

// TestNATTraversalPCP: routers with PCP alone.
func TestNATTraversalPCP(t *testing.T) {
	natTraversal(t, portmap.ProtoPCP, lab.NATProtocols{PCP: true}, 5*time.Second)
}

// TestNATTraversalNATPMP: routers with NAT-PMP alone.
func TestNATTraversalNATPMP(t *testing.T) {
	natTraversal(t, portmap.ProtoNATPMP, lab.NATProtocols{NATPMP: true}, 5*time.Second)
}

// TestNATTraversalUPnP: routers with UPnP IGD alone. UPnP has no epoch
// and no announcement, but the restarted miniupnpd multicasts SSDP
// NOTIFYs with its new boot counter and HTTP port, on which the client
// looks its mapping up at once, finds it gone, and adds it again. (Had
// the NOTIFY been lost, the lookup every portmap.DefaultUPnPCheck, 15 s,
// would notice, and an SSDP search of 2 s find the new port.)
func TestNATTraversalUPnP(t *testing.T) {
	natTraversal(t, portmap.ProtoUPnP, lab.NATProtocols{UPnP: true}, 5*time.Second)
}

// natTraversal: with both routers answering only protos, two of alice's
// hosts (desktop behind routerA, laptop behind routerB) get their
// mappings by proto, register, see each other at their NAT's address
// and mapped port, and ping each other's tunnel address; status says
// which protocol holds the mapping. Then routerB reboots (miniupnpd
// restarted with its mappings, rules and connection tracking lost): the
// laptop's mapping is back within heal, and the desktop reaches it
// through the tunnel again. The times are logged.
func natTraversal(t *testing.T, proto portmap.Protocol, protos lab.NATProtocols, heal time.Duration) {
	l := lab.Start(t, lab.Options{NATProtocols: map[string]lab.NATProtocols{"routerA": protos, "routerB": protos}}, "ping", "iputils-ping")
	dir := t.TempDir()
	labServer(t, l, dir)

	start := time.Now()
	desktop := startClient(t, l, dir, "hostA", "desktop")
	laptop := startClient(t, l, dir, "hostB", "laptop")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("desktop:\n%s", desktop.out.String())
			t.Logf("laptop:\n%s", laptop.out.String())
			t.Logf("routerB's miniupnpd:\n%s", l.NATLog("routerB"))
		}
	})
	wanA := netip.AddrPortFrom(l.WAN("routerA"), 4500)
	wanB := netip.AddrPortFrom(l.WAN("routerB"), 4500)
	// UPnP IGD comes after PCP and NAT-PMP (both refused at once here)
	// and an SSDP search of 2 s; meanwhile each host publishes the
	// endpoint the server sees, which through these NATs is the same
	// address and port as the mapping to come.
	laptop.waitPeer(desktop.name, wanA, 10*time.Second)
	desktop.waitPeer(laptop.name, wanB, 10*time.Second)
	seen := time.Since(start)

	laptopULA := desktop.peerULA(laptop.name)
	desktopULA := laptop.peerULA(desktop.name)
	pingWithin(t, l, desktop, laptopULA, 10*time.Second)
	first := time.Since(start)
	pingWithin(t, l, laptop, desktopULA, 5*time.Second)
	for _, c := range []*labClient{desktop, laptop} {
		c.waitStatus("a mapping by "+proto.String(), 10*time.Second, func(st daemon.Status) bool { return st.Mapping.Protocol == proto.Key() })
	}
	bothMapped := time.Since(start)
	t.Logf("%v: both hosts see each other %v after start, first ping reply through the tunnel %v after start, both mapped by %v %v after start",
		proto, seen.Round(time.Millisecond), first.Round(time.Millisecond), proto, bothMapped.Round(time.Millisecond))

	// What the user sees.
	client := coredns.Built(t, "btmm-client")
	human, err := exec.Command(client, "status", "--socket", laptop.socket).CombinedOutput()
	if want := wanB.String() + " (" + proto.String() + " via 192.168.1.1"; err != nil || !strings.Contains(string(human), want) {
		t.Fatalf("btmm-client status: %v, want %q in\n%s", err, want, human)
	}
	js, err := exec.Command(client, "status", "--socket", laptop.socket, "--json").Output()
	var st daemon.Status
	if err != nil || json.Unmarshal(js, &st) != nil || st.Mapping.Protocol != proto.Key() || st.Mapping.External != wanB.String() {
		t.Fatalf("btmm-client status --json: %v\n%s", err, js)
	}

	// routerB reboots. First a second of quiet: the client's own routes
	// to a new peer are a network change to it, which makes it check
	// the mapping again; the reboot must be noticed by the protocol,
	// not by such a coincidence.
	time.Sleep(time.Second)
	if err := l.RestartNAT("routerB", true); err != nil {
		t.Fatal(err)
	}
	rebooted := time.Now()
	for !strings.Contains(readFile(l.LeaseFile("routerB")), ":4500:") {
		if time.Since(rebooted) > heal {
			t.Fatalf("%v: the laptop's mapping is not back %v after routerB rebooted; lease file %q", proto, heal, readFile(l.LeaseFile("routerB")))
		}
		time.Sleep(20 * time.Millisecond)
	}
	mapped := time.Since(rebooted)
	pingWithin(t, l, desktop, laptopULA, 10*time.Second)
	t.Logf("%v: after routerB's reboot, the mapping is back in %v, and the desktop reaches the laptop through the tunnel in %v",
		proto, mapped.Round(time.Millisecond), time.Since(rebooted).Round(time.Millisecond))
	if st, err := laptop.status(); err != nil || st.Mapping.Protocol != proto.Key() || st.Mapping.External != wanB.String() {
		t.Errorf("the laptop's mapping after the reboot: %+v, %v", st.Mapping, err)
	}

	// A clean stop deletes the mapping by the same protocol.
	laptop.stop()
	if lease := readFile(l.LeaseFile("routerB")); strings.Contains(lease, ":4500:") {
		t.Errorf("%v: the laptop's mapping after a clean stop: %q", proto, lease)
	}
}
