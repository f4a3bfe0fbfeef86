package identity

import (
	"errors"
	"fmt"
	"net"

	"github.com/openbtmm/btmm/client/route"
)

// Primary finds the primary interface, whose MAC gives the EUI-64 (RFC 6281
// §6.3): the interface of the kernel's IPv4 default route (route package).
// Without one, it is the first interface that is up, not a loopback and has
// a hardware address EUI64FromMAC can use.
//
// The default route's interface is returned even when it has no hardware
// address (tun, ppp, WireGuard): it is the primary interface all the same,
// and New gives it a random EUI-64. An error means no interface qualified;
// a caller can still run with New("", nil, rand.Reader).
func Primary() (name string, mac net.HardwareAddr, err error) {
	d, ok, err := route.DefaultIPv4()
	if err != nil {
		ok = false // no routing table to read: fall back to the interfaces
	}
	return primary(d, ok, net.InterfaceByName, net.Interfaces)
}

// primary is Primary with its inputs injected: the default route, if ok.
func primary(d route.Default, ok bool, byName func(string) (*net.Interface, error), all func() ([]net.Interface, error)) (string, net.HardwareAddr, error) {
	if ok {
		ifi, err := byName(d.Iface)
		if err == nil {
			return ifi.Name, ifi.HardwareAddr, nil
		}
		// The route names an interface that has just gone away: fall
		// through to the interface list.
	}
	ifis, err := all()
	if err != nil {
		return "", nil, fmt.Errorf("identity: listing interfaces: %w", err)
	}
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		if _, ok := EUI64FromMAC(ifi.HardwareAddr); ok {
			return ifi.Name, ifi.HardwareAddr, nil
		}
	}
	return "", nil, errors.New("identity: no IPv4 default route and no interface that is up with a hardware address")
}
