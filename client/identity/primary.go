package identity

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/openbtmm/btmm/client/route"
)

// procRoute is Linux's IPv4 routing table (main table) in text. Read from a
// process, it shows that process's network namespace.
const procRoute = "/proc/net/route"

// Primary finds the primary interface, whose MAC gives the EUI-64 (RFC 6281
// §6.3): the interface of the IPv4 default route with the lowest metric, as
// listed in /proc/net/route. Without one (no default route, or not Linux), it
// is the first interface that is up, not a loopback and has a hardware
// address EUI64FromMAC can use.
//
// The default route's interface is returned even when it has no hardware
// address (tun, ppp, WireGuard): it is the primary interface all the same,
// and New gives it a random EUI-64. An error means no interface qualified;
// a caller can still run with New("", nil, rand.Reader).
func Primary() (name string, mac net.HardwareAddr, err error) {
	var routes io.Reader // stays nil off Linux or without /proc
	if f, err := os.Open(procRoute); err == nil {
		defer f.Close()
		routes = f
	}
	return primary(routes, net.InterfaceByName, net.Interfaces)
}

// primary is Primary with its inputs injected; routes may be nil.
func primary(routes io.Reader, byName func(string) (*net.Interface, error), all func() ([]net.Interface, error)) (string, net.HardwareAddr, error) {
	if routes != nil {
		if d, ok := route.Parse(routes); ok {
			name := d.Iface
			ifi, err := byName(name)
			if err == nil {
				return ifi.Name, ifi.HardwareAddr, nil
			}
			// The route names an interface that has just gone away:
			// fall through to the interface list.
		}
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
