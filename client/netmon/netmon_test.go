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
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root to make a network namespace")
		}
		t.Skip("needs root to make a network namespace")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // also switches this thread into it
	if err != nil {
		t.Fatal(err)
	}
	defer func() { netns.Set(orig); ns.Close() }()

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
