package discover

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
)

// Route is how a client reaches a server: where, over which network (as
// miekg/dns names them: "udp", "tcp", "tcp-tls") and, for "tcp-tls", with
// which TLS settings.
type Route struct {
	Addr    string
	Network string
	TLS     *tls.Config
}

// The transports a client may be configured with.
const (
	TransportTLS = "tls" // DNS over TLS (RFC 6281 §7.2), the default
	TransportTCP = "tcp" // plain DNS over TCP
	TransportUDP = "udp" // plain DNS over UDP
)

// RouteTo decides, for the publisher and the watcher alike, how to reach
// the server of svc for the user whose domain is userDomain under zone:
//
//   - server, if not empty, is the server, reached over transport;
//   - otherwise the server is found by SRV: with transport "tls" only the
//     DNS-over-TLS names (_dns-SVC-tls._tcp, _dns-SVC-tls._udp), with
//     "tcp" and "udp" only the plain one (_dns-SVC._udp), reached over
//     that transport. A client configured for plain DNS is never sent to a
//     TLS port it has no settings for, and one configured for TLS never
//     falls back to plain DNS.
//
// base is the TLS configuration (roots or pin) for "tls"; the route's is
// a clone, its ServerName the SRV target's when base names none.
func (r *Resolver) RouteTo(ctx context.Context, svc Service, userDomain, zone, transport, server string, base *tls.Config) (Route, error) {
	var useTLS bool
	switch transport {
	case TransportTLS, "":
		useTLS = true
	case TransportTCP, TransportUDP:
	default:
		return Route{}, fmt.Errorf("discover: transport %q is not %q, %q or %q", transport, TransportTLS, TransportTCP, TransportUDP)
	}
	rt := Route{Addr: server, Network: transport}
	name := ""
	if server == "" {
		ep, err := r.find(ctx, svc, userDomain, zone, func(isTLS bool) bool { return isTLS == useTLS })
		if err != nil {
			if errors.Is(err, ErrNotOffered) && !useTLS {
				err = fmt.Errorf("%w (over plain DNS; transport %q takes no DNS-over-TLS server)", err, transport)
			}
			return Route{}, err
		}
		rt.Addr, name = ep.Addr.String(), ep.Name
	}
	if useTLS {
		rt.Network = "tcp-tls"
		c := &tls.Config{MinVersion: tls.VersionTLS12}
		if base != nil {
			c = base.Clone()
		}
		if c.ServerName == "" && name != "" {
			c.ServerName = strings.TrimSuffix(name, ".")
		}
		rt.TLS = c
	}
	return rt, nil
}
