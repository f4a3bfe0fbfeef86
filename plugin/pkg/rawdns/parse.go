package rawdns

import (
	"crypto/tls"
	"net"

	"github.com/coredns/caddy"
)

// ParseProperty reads a listener property, given with its arguments, into
// a:
//
//	udp ADDRESS|off
//	tcp ADDRESS|off
//	tls ADDRESS CERT KEY
//
// It reports false, and sets nothing, for any other property; c makes the
// errors name the Corefile line.
func ParseProperty(c *caddy.Controller, prop string, args []string, a *Addrs) (bool, error) {
	switch prop {
	case "udp", "tcp":
		if len(args) != 1 {
			return true, c.ArgErr()
		}
		addr := args[0]
		if addr == "off" {
			addr = ""
		} else if _, _, err := net.SplitHostPort(addr); err != nil {
			return true, c.Errf("%s needs HOST:PORT or off, not %q", prop, args[0])
		}
		if prop == "udp" {
			a.UDP = addr
		} else {
			a.TCP = addr
		}
	case "tls":
		if len(args) != 3 {
			return true, c.Errf("tls needs ADDRESS CERT KEY")
		}
		if _, _, err := net.SplitHostPort(args[0]); err != nil {
			return true, c.Errf("tls needs HOST:PORT, not %q", args[0])
		}
		cert, err := tls.LoadX509KeyPair(args[1], args[2])
		if err != nil {
			return true, c.Errf("tls certificate: %v", err)
		}
		a.TLS = args[0]
		a.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	default:
		return false, nil
	}
	return true, nil
}
