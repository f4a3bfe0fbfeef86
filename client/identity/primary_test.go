package identity

import (
	"errors"
	"net"
	"strings"
	"testing"
)

const routeHeader = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"

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
