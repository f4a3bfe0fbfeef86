package portmap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/openbtmm/btmm/client/route"
)

// ErrNoGateway says the kernel has no IPv4 default route via a gateway.
var ErrNoGateway = errors.New("portmap: no IPv4 default gateway")

// DefaultGateway returns the gateway of the kernel's IPv4 default route
// with the lowest metric (Linux). It is Config.Gateway's default.
func DefaultGateway() (netip.Addr, error) {
	return defaultGateway(route.DefaultIPv4, "default gateway", ErrNoGateway)
}

// defaultGateway returns the gateway of the default route that lookup
// reads, or none when the route has no gateway.
func defaultGateway(lookup func() (route.Default, bool, error), what string, none error) (netip.Addr, error) {
	d, ok, err := lookup()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: %s: %w", what, err)
	}
	if !ok || !d.Gateway.IsValid() {
		return netip.Addr{}, none
	}
	return d.Gateway, nil
}

// localAddrToward returns the source address the kernel would use toward
// gw. Connecting a UDP socket sends nothing.
func localAddrToward(gw netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw, DefaultServerPort)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: local address toward %v: %w", gw, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
