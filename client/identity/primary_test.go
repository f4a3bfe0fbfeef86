package identity

import (
	"errors"
	"net"
	"strings"
	"testing"
)

const routeHeader = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"

func TestDefaultRoute(t *testing.T) {
	for _, tc := range []struct {
		name, table, want string
	}{
		{"one default", "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
			"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", "eth0"},
		{"lowest metric wins", "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n" +
			"eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
			"usb0\t00000000\t010300C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n", "eth0"},
		{"route that is not up", "eth0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n" +
			"tun0\t00000000\t00000000\t0001\t0\t0\t50\t00000000\t0\t0\t0\n", "tun0"},
		{"only a subnet route", "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", ""},
		{"a /1 is not a default", "tun0\t00000000\t00000000\t0001\t0\t0\t0\t00000080\t0\t0\t0\n", ""},
		{"garbage lines skipped", "eth0 zz\n\nwlan0\t00000000\tnothex\t0003\t0\t0\tx\t00000000\n" +
			"eth1\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", "eth1"},
		{"empty table", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := defaultRoute(strings.NewReader(routeHeader + tc.table))
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("defaultRoute = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

func TestPrimary(t *testing.T) {
	mac := net.HardwareAddr{0x00, 0x22, 0x69, 0x8e, 0x34, 0x2a}
	ifaces := map[string]*net.Interface{
		"lo":    {Name: "lo", Flags: net.FlagUp | net.FlagLoopback},
		"down0": {Name: "down0", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
		"tun0":  {Name: "tun0", Flags: net.FlagUp},
		"eth0":  {Name: "eth0", Flags: net.FlagUp, HardwareAddr: mac},
	}
	byName := func(name string) (*net.Interface, error) {
		if ifi, ok := ifaces[name]; ok {
			return ifi, nil
		}
		return nil, errors.New("no such interface")
	}
	all := func() ([]net.Interface, error) {
		return []net.Interface{*ifaces["lo"], *ifaces["down0"], *ifaces["tun0"], *ifaces["eth0"]}, nil
	}
	route := func(iface string) *strings.Reader {
		return strings.NewReader(routeHeader + iface + "\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n")
	}

	// The default route's interface, with or without a MAC.
	if name, got, err := primary(route("eth0"), byName, all); name != "eth0" || got.String() != mac.String() || err != nil {
		t.Errorf("default via eth0: %q %v %v", name, got, err)
	}
	if name, got, err := primary(route("tun0"), byName, all); name != "tun0" || got != nil || err != nil {
		t.Errorf("default via tun0: %q %v %v", name, got, err)
	}
	// No default route, no /proc, or a route to a vanished interface: the
	// first interface that is up, not loopback, with a usable MAC.
	for name, routes := range map[string]*strings.Reader{
		"no default route":          strings.NewReader(routeHeader),
		"route to a gone interface": route("gone0"),
	} {
		if got, _, err := primary(routes, byName, all); got != "eth0" || err != nil {
			t.Errorf("%s: %q %v", name, got, err)
		}
	}
	if got, _, err := primary(nil, byName, all); got != "eth0" || err != nil {
		t.Errorf("no routing table: %q %v", got, err)
	}
	// Nothing qualifies.
	none := func() ([]net.Interface, error) {
		return []net.Interface{*ifaces["lo"], *ifaces["down0"], *ifaces["tun0"]}, nil
	}
	if name, _, err := primary(nil, byName, none); err == nil {
		t.Errorf("no usable interface gave %q", name)
	}
}

// TestPrimaryHere only checks that Primary runs on this machine; what it
// finds depends on the machine.
func TestPrimaryHere(t *testing.T) {
	name, mac, err := Primary()
	t.Logf("Primary() = %q %v %v", name, mac, err)
	if err == nil && name == "" {
		t.Error("no error and no interface")
	}
}
