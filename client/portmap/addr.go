package portmap

import "net/netip"

var sharedSpace = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598, carrier-grade NAT

// IsPrivate reports whether a is an RFC 1918 IPv4 address (10/8,
// 172.16/12, 192.168/16), the case in which RFC 6886 §3.8 says to try
// NAT-PMP. An IPv4-mapped IPv6 address counts as its IPv4 address; any
// other IPv6 address (even a ULA) reports false.
func IsPrivate(a netip.Addr) bool {
	a = a.Unmap()
	return a.Is4() && a.IsPrivate()
}

// IsSharedOrPrivate reports whether a is RFC 1918 or in the RFC 6598
// shared address space 100.64/10. Such an address is not reachable from
// the internet: as a gateway's external address it hints at a double NAT
// (RFC 6281 §4.4), and as the host's own address it means a NAT is in the
// way.
func IsSharedOrPrivate(a netip.Addr) bool {
	a = a.Unmap()
	return IsPrivate(a) || sharedSpace.Contains(a)
}
