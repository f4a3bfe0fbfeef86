package netmon

import (
	"context"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestAddressChangeIsNoticed adds a link and an address in a network
// namespace of the test's own, and expects one debounced change.
func TestAddressChangeIsNoticed(t *testing.T) {
	defer inNewNetns(t)()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes, err := Watch(ctx, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// A veth pair: the kernel here has no dummy links.
	link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "btmmtest0"}, PeerName: "btmmtest1"}
	if err := netlink.LinkAdd(link); err != nil {
		t.Fatal(err)
	}
	netlink.LinkSetUp(link)
	addr, _ := netlink.ParseAddr("192.0.2.10/24")
	if err := netlink.AddrAdd(link, addr); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
	case <-time.After(3 * time.Second):
		t.Fatal("no change noticed after adding a link and an address")
	}
	// The burst was one change.
	select {
	case <-changes:
		t.Fatal("one burst of changes was reported twice")
	case <-time.After(400 * time.Millisecond):
	}
}

// TestIgnoredInterface: changes of an interface Watch was told to ignore
// (the tunnel's own device) are not reported; others still are.
func TestIgnoredInterface(t *testing.T) {
	defer inNewNetns(t)()

	link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "btmmown0"}, PeerName: "btmmother0"}
	if err := netlink.LinkAdd(link); err != nil {
		t.Fatal(err)
	}
	netlink.LinkSetUp(link)
	other, err := netlink.LinkByName("btmmother0")
	if err != nil {
		t.Fatal(err)
	}
	netlink.LinkSetUp(other)
	time.Sleep(200 * time.Millisecond) // the links' own events, before Watch
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes, err := Watch(ctx, 100*time.Millisecond, "btmmown0")
	if err != nil {
		t.Fatal(err)
	}
	own, _ := netlink.ParseAddr("fd00::1/64")
	if err := netlink.AddrAdd(link, own); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
		t.Fatal("an address on the ignored interface was reported")
	case <-time.After(700 * time.Millisecond):
	}
	addr, _ := netlink.ParseAddr("192.0.2.11/24")
	if err := netlink.AddrAdd(other, addr); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
	case <-time.After(3 * time.Second):
		t.Fatal("an address on another interface was not reported")
	}
}

// inNewNetns locks the test's goroutine to its thread and moves the thread
// into a network namespace of its own; the returned function moves it
// back. It needs root, and says so (failing under CI).
func inNewNetns(t *testing.T) func() {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root to make a network namespace")
		}
		t.Skip("needs root to make a network namespace")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	ns, err := netns.New() // also switches this thread into it
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	return func() {
		netns.Set(orig)
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	}
}

// TestGlobalIPv6: the host's global IPv6 address is the source of its
// IPv6 default route; a unique local address there, or no route, is no
// global address.
func TestGlobalIPv6(t *testing.T) {
	defer inNewNetns(t)()
	link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "btmm6a"}, PeerName: "btmm6b"}
	if err := netlink.LinkAdd(link); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	if peer, err := netlink.LinkByName("btmm6b"); err == nil {
		netlink.LinkSetUp(peer)
	}
	if a, ok := GlobalIPv6(); ok {
		t.Fatalf("no IPv6 route, yet GlobalIPv6() = %v", a)
	}
	add := func(cidr, gw string) {
		t.Helper()
		a, _ := netlink.ParseAddr(cidr)
		a.Flags = unix.IFA_F_NODAD
		if err := netlink.AddrAdd(link, a); err != nil {
			t.Fatal(err)
		}
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP(gw)}
		if err := netlink.RouteReplace(r); err != nil {
			t.Fatal(err)
		}
	}
	add("fd00:5::5/64", "fd00:5::1")
	if a, ok := GlobalIPv6(); ok {
		t.Fatalf("a ULA alone, yet GlobalIPv6() = %v", a)
	}
	add("2001:db8:5::5/64", "2001:db8:5::1")
	if a, ok := GlobalIPv6(); !ok || a != netip.MustParseAddr("2001:db8:5::5") {
		t.Fatalf("GlobalIPv6() = %v, %v; want 2001:db8:5::5", a, ok)
	}
	for _, tt := range []struct {
		a    string
		want bool
	}{{"2001:db8::1", true}, {"fd12::1", false}, {"fe80::1", false}, {"::ffff:23.1.1.2", false}, {"23.1.1.2", false}, {"::1", false}} {
		if got := IsGlobalIPv6(netip.MustParseAddr(tt.a)); got != tt.want {
			t.Errorf("IsGlobalIPv6(%s) = %v", tt.a, got)
		}
	}
}
