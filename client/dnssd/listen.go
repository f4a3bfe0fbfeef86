package dnssd

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// Listener is a listening TCP socket.
type Listener struct {
	Addr netip.Addr // the local address; unspecified for a wildcard
	Port uint16
}

// tcpListen is the state "LISTEN" in /proc/net/tcp (TCP_LISTEN, 10).
const tcpListen = "0A"

// ParseProcNetTCP reads /proc/net/tcp or /proc/net/tcp6 (proc(5)) and
// returns the sockets in state LISTEN. Addresses are in the kernel's
// byte order, as the kernel prints them: each 32-bit word of the address
// as a hexadecimal number of the machine's byte order. Lines it cannot
// read are skipped; only a read error is returned.
func ParseProcNetTCP(r io.Reader) ([]Listener, error) {
	var out []Listener
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != tcpListen {
			continue
		}
		l, ok := parseAddrPort(f[1])
		if ok {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

func parseAddrPort(s string) (Listener, bool) {
	addr, port, ok := strings.Cut(s, ":")
	if !ok || len(port) != 4 {
		return Listener{}, false
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return Listener{}, false
	}
	if len(addr) != 8 && len(addr) != 32 {
		return Listener{}, false
	}
	b := make([]byte, 0, 16)
	for i := 0; i < len(addr); i += 8 {
		w, err := strconv.ParseUint(addr[i:i+8], 16, 32)
		if err != nil {
			return Listener{}, false
		}
		b = binary.NativeEndian.AppendUint32(b, uint32(w))
	}
	a, _ := netip.AddrFromSlice(b)
	return Listener{Addr: a, Port: uint16(p)}, true
}

// Listening returns the TCP sockets listening on this host (Linux: from
// /proc/net/tcp and /proc/net/tcp6). On other systems it returns an
// error that says it cannot tell.
func Listening() ([]Listener, error) {
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("services_auto: cannot list listening sockets on %s: only configured services are published", runtime.GOOS)
	}
	var all []Listener
	for _, path := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(path)
		if err != nil {
			if path == "/proc/net/tcp6" && os.IsNotExist(err) {
				continue // no IPv6
			}
			return nil, err
		}
		l, err := ParseProcNetTCP(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		all = append(all, l...)
	}
	return all, nil
}

// Detect returns the well-known services (Known) that some listener
// serves on the host's tunnel address ula: one listening on every IPv6
// address (::) or on ula itself. A socket on an IPv4 address or on
// loopback only is not reachable through the tunnel and does not count.
// Where two well-known services share a port (ssh and sftp-ssh), only
// the first is taken.
func Detect(ls []Listener, ula netip.Addr) []Service {
	reachable := func(port uint16) bool {
		return slices.ContainsFunc(ls, func(l Listener) bool {
			return l.Port == port && l.Addr.Is6() && !l.Addr.Is4In6() && (l.Addr.IsUnspecified() || l.Addr == ula)
		})
	}
	var out []Service
	ports := map[uint16]bool{}
	for _, k := range Known {
		if !ports[k.Port] && reachable(k.Port) {
			ports[k.Port] = true
			out = append(out, Service{Type: k.Type, Port: k.Port})
		}
	}
	return out
}
