package netmon

import (
	"net"
	"net/netip"
)

// probe6 is a global unicast address (2000::/3) that GlobalIPv6 routes
// toward. Nothing is sent to it: connecting a UDP socket only asks the
// kernel for a route and a source address.
var probe6 = netip.MustParseAddrPort("[2000::1]:9")

// GlobalIPv6 returns the global IPv6 address this host would send from to
// the IPv6 internet: the source address the kernel picks (RFC 6724) for
// its default route, if there is one and it gives a global unicast
// address. A unique local address (fc00::/7, the tunnel's own kind) is no
// way to reach the host from elsewhere and does not count; nor does
// IPv4 mapped into IPv6. The second result is false when there is no
// such address.
func GlobalIPv6() (netip.Addr, bool) {
	c, err := net.DialUDP("udp6", nil, net.UDPAddrFromAddrPort(probe6))
	if err != nil {
		return netip.Addr{}, false
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
	return a, IsGlobalIPv6(a)
}

// IsGlobalIPv6 reports whether a is an IPv6 address another host may
// reach this one at: global unicast, not a unique local address, not
// IPv4 in disguise.
func IsGlobalIPv6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && a.IsGlobalUnicast() && !a.IsPrivate()
}
