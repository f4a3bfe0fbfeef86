package portmap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// ErrNoGateway says the kernel has no IPv4 default route via a gateway.
var ErrNoGateway = errors.New("portmap: no IPv4 default gateway")

// DefaultGateway returns the gateway of the kernel's IPv4 default route
// with the lowest metric, read from /proc/net/route (Linux). It is
// Config.Gateway's default.
func DefaultGateway() (netip.Addr, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: default gateway: %w", err)
	}
	defer f.Close()
	return parseProcNetRoute(f)
}

// parseProcNetRoute finds the default gateway in the text of
// /proc/net/route: a route that is up (RTF_UP), goes via a gateway
// (RTF_GATEWAY), and has destination and mask 0; the lowest metric wins.
// The kernel prints addresses as the host-order integer of network-order
// bytes, so they are converted back with the native byte order.
func parseProcNetRoute(r io.Reader) (netip.Addr, error) {
	const rtfUp, rtfGateway = 0x1, 0x2
	var best netip.Addr
	bestMetric := uint64(1<<64 - 1)
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		gw, err2 := strconv.ParseUint(f[2], 16, 32)
		flags, err3 := strconv.ParseUint(f[3], 16, 16)
		metric, err4 := strconv.ParseUint(f[6], 10, 32)
		mask, err5 := strconv.ParseUint(f[7], 16, 32)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			continue
		}
		if dst != 0 || mask != 0 || flags&(rtfUp|rtfGateway) != rtfUp|rtfGateway || gw == 0 {
			continue
		}
		if metric < bestMetric {
			var b [4]byte
			binary.NativeEndian.PutUint32(b[:], uint32(gw))
			best, bestMetric = netip.AddrFrom4(b), metric
		}
	}
	if err := sc.Err(); err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: default gateway: %w", err)
	}
	if !best.IsValid() {
		return netip.Addr{}, ErrNoGateway
	}
	return best, nil
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
