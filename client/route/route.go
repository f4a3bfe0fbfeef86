// Package route reads the kernel's default routes: the IPv4 one says which
// interface is the host's primary one (identity) and which gateway to ask
// for a port mapping (portmap); the IPv6 one, which gateway to ask for an
// IPv6 pinhole. On Linux it reads /proc/net/route and /proc/net/ipv6_route;
// on macOS it asks route(8), whose output ParseRouteGet reads.
package route

import (
	"bufio"
	"encoding/binary"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Route flags from linux/route.h.
const (
	rtfUp      = 0x0001
	rtfGateway = 0x0002
)

// Default is a default route.
type Default struct {
	Iface string
	// Gateway is invalid for a route straight out of a device (ppp,
	// tun). An IPv6 link-local gateway carries Iface as its zone.
	Gateway netip.Addr
}

// Parse finds, in the text of /proc/net/route, the IPv4 default route
// (destination and mask 0, up) with the lowest metric; the first listed
// wins a tie, as in the kernel. Lines it cannot read are skipped: the file
// is the kernel's, and one odd line should not hide the others.
//
// The format is a header line, then one route per line, fields separated
// by whitespace: Iface Destination Gateway Flags RefCnt Use Metric Mask MTU
// Window IRTT, with addresses and flags in hex and the metric in decimal.
// The kernel prints addresses as the host-order integer of network-order
// bytes, so they are converted back with the native byte order.
func Parse(r io.Reader) (Default, bool) {
	var best Default
	bestMetric := uint64(0)
	found := false
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[0] == "" {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		gw, err2 := strconv.ParseUint(f[2], 16, 32)
		flags, err3 := strconv.ParseUint(f[3], 16, 32)
		metric, err4 := strconv.ParseUint(f[6], 10, 32)
		mask, err5 := strconv.ParseUint(f[7], 16, 32)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil {
			continue
		}
		if dst != 0 || mask != 0 || flags&rtfUp == 0 {
			continue
		}
		if found && metric >= bestMetric {
			continue
		}
		d := Default{Iface: f[0]}
		if flags&rtfGateway != 0 && gw != 0 {
			var b [4]byte
			binary.NativeEndian.PutUint32(b[:], uint32(gw))
			d.Gateway = netip.AddrFrom4(b)
		}
		best, bestMetric, found = d, metric, true
	}
	return best, found
}

// Parse6 finds, in the text of /proc/net/ipv6_route, the IPv6 default
// route (destination ::/0, up) with the lowest metric, as Parse does for
// IPv4. Each line is: destination, its prefix length, source, its prefix
// length, next hop (addresses as 32 hex digits, lengths as 2), metric,
// reference count, use count, flags (8 hex digits each), device. No
// header.
func Parse6(r io.Reader) (Default, bool) {
	var best Default
	bestMetric := uint64(0)
	found := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		dst, ok1 := hexAddr6(f[0])
		plen, err2 := strconv.ParseUint(f[1], 16, 8)
		hop, ok3 := hexAddr6(f[4])
		metric, err4 := strconv.ParseUint(f[5], 16, 32)
		flags, err5 := strconv.ParseUint(f[8], 16, 32)
		if !ok1 || err2 != nil || !ok3 || err4 != nil || err5 != nil {
			continue
		}
		if !dst.IsUnspecified() || plen != 0 || flags&rtfUp == 0 || f[9] == "lo" {
			continue
		}
		if found && metric >= bestMetric {
			continue
		}
		d := Default{Iface: f[9]}
		if flags&rtfGateway != 0 && !hop.IsUnspecified() {
			d.Gateway = hop
			if hop.IsLinkLocalUnicast() {
				d.Gateway = hop.WithZone(f[9])
			}
		}
		best, bestMetric, found = d, metric, true
	}
	return best, found
}

// hexAddr6 reads an IPv6 address written as 32 hex digits.
func hexAddr6(s string) (netip.Addr, bool) {
	var b [16]byte
	if len(s) != 32 {
		return netip.Addr{}, false
	}
	for i := range b {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			return netip.Addr{}, false
		}
		b[i] = byte(v)
	}
	return netip.AddrFrom16(b), true
}

// ParseRouteGet reads the output of macOS's `route -n get default`: the
// "gateway:" and "interface:" lines. ok is false without an interface
// (route(8) says "not in table" and exits non-zero then). The gateway is
// kept only if it is IPv4.
func ParseRouteGet(r io.Reader) (Default, bool) { return parseRouteGet(r, false) }

// ParseRouteGet6 is ParseRouteGet for `route -n get -inet6 default`: the
// gateway is kept only if it is IPv6 (a link-local one with its zone,
// "fe80::1%en0").
func ParseRouteGet6(r io.Reader) (Default, bool) { return parseRouteGet(r, true) }

func parseRouteGet(r io.Reader, v6 bool) (Default, bool) {
	var d Default
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, value, found := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !found {
			continue
		}
		value = strings.TrimSpace(value)
		switch key {
		case "gateway":
			if a, err := netip.ParseAddr(value); err == nil && a.Is6() == v6 && !a.Is4In6() {
				d.Gateway = a
			}
		case "interface":
			d.Iface = value
		}
	}
	if v6 && d.Gateway.IsLinkLocalUnicast() && d.Gateway.Zone() == "" && d.Iface != "" {
		d.Gateway = d.Gateway.WithZone(d.Iface)
	}
	return d, d.Iface != ""
}
