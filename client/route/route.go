// Package route reads the kernel's IPv4 default route: which interface is
// the host's primary one (identity) and which gateway to ask for a port
// mapping (portmap). On Linux it reads /proc/net/route; on macOS it asks
// route(8), whose output ParseRouteGet reads.
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

// Default is an IPv4 default route.
type Default struct {
	Iface   string
	Gateway netip.Addr // invalid for a route straight out of a device (ppp, tun)
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

// ParseRouteGet reads the output of macOS's `route -n get default`: the
// "gateway:" and "interface:" lines. ok is false without an interface
// (route(8) says "not in table" and exits non-zero then).
func ParseRouteGet(r io.Reader) (Default, bool) {
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
			if a, err := netip.ParseAddr(value); err == nil && a.Is4() {
				d.Gateway = a
			}
		case "interface":
			d.Iface = value
		}
	}
	return d, d.Iface != ""
}
