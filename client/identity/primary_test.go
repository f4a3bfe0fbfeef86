package identity

import (
	"errors"
	"net"
	"testing"

	"github.com/openbtmm/btmm/client/route"
)

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
	via := func(iface string) route.Default { return route.Default{Iface: iface} }

	// The default route's interface, with or without a MAC.
	if name, got, err := primary(via("eth0"), true, byName, all); name != "eth0" || got.String() != mac.String() || err != nil {
		t.Errorf("default via eth0: %q %v %v", name, got, err)
	}
	if name, got, err := primary(via("tun0"), true, byName, all); name != "tun0" || got != nil || err != nil {
		t.Errorf("default via tun0: %q %v %v", name, got, err)
	}
	// No default route, or a route to a vanished interface: the first
	// interface that is up, not loopback, with a usable MAC.
	if got, _, err := primary(route.Default{}, false, byName, all); got != "eth0" || err != nil {
		t.Errorf("no default route: %q %v", got, err)
	}
	if got, _, err := primary(via("gone0"), true, byName, all); got != "eth0" || err != nil {
		t.Errorf("route to a gone interface: %q %v", got, err)
	}
	// Nothing qualifies.
	none := func() ([]net.Interface, error) {
		return []net.Interface{*ifaces["lo"], *ifaces["down0"], *ifaces["tun0"]}, nil
	}
	if name, _, err := primary(route.Default{}, false, byName, none); err == nil {
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
