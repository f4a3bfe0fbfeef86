package netmon

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
