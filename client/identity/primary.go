package identity

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
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
		if name, ok := defaultRoute(routes); ok {
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

// Route flags from linux/route.h.
const (
	rtfUp = 0x0001
)

// defaultRoute reads /proc/net/route and returns the interface of the
// IPv4 default route (destination and mask 0, up) with the lowest metric;
// the first listed wins a tie, as it does in the kernel. Lines it cannot
// read are skipped: the file is the kernel's, and one odd line should not
// hide the others.
//
// The format is a header line, then one route per line, fields separated by
// whitespace: Iface Destination Gateway Flags RefCnt Use Metric Mask MTU
// Window IRTT, with addresses and flags in hex and the metric in decimal.
func defaultRoute(r io.Reader) (string, bool) {
	sc := bufio.NewScanner(r)
	best, bestMetric := "", uint64(0)
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
		flags, err2 := strconv.ParseUint(f[3], 16, 32)
		metric, err3 := strconv.ParseUint(f[6], 10, 32)
		mask, err4 := strconv.ParseUint(f[7], 16, 32)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			continue
		}
		if dst != 0 || mask != 0 || flags&rtfUp == 0 || f[0] == "" {
			continue
		}
		if best == "" || metric < bestMetric {
			best, bestMetric = f[0], metric
		}
	}
	return best, best != ""
}
