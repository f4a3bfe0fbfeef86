package netmon

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

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
