package srvdiscovery

import (
	"net"
	"strconv"
	"strings"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/corefile"
	"github.com/openbtmm/btmm/plugin/pkg/members"
)

const pluginName = "srv-discovery"

var log = clog.NewWithPlugin(pluginName)

func init() { plugin.Register(pluginName, setup) }

func setup(c *caddy.Controller) error {
	s, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	cfg := dnsserver.GetConfig(c)
	members.OnStartup(c, pluginName, func(h members.Zone) error {
		s.zone = h
		for _, svc := range []Service{{"update", false}, {"update", true}, {"llq", false}, {"llq", true}, {"push", true}} {
			if t := s.targets[svc]; len(t) > 0 {
				log.Infof("zone %s: %s on %d target(s)", h.Zone(), svc, len(t))
			}
		}
		return nil
	})
	cfg.AddPlugin(func(next plugin.Handler) plugin.Handler {
		s.Next = next
		return s
	})
	return nil
}

// parse reads
//
//	srv-discovery {
//	    SERVICE TARGET PORT [tls]
//	    ...
//	}
//
// with SERVICE update, llq or push (DNS Push, always over TLS), at least
// one line.
func parse(c *caddy.Controller) (*SrvDiscovery, error) {
	s := &SrvDiscovery{targets: make(map[Service][]Target)}
	if err := corefile.NoArgs(c); err != nil {
		return nil, err
	}
	// Each line is a service's target; a service has as many as it needs.
	_, err := corefile.Properties(c, func(service string, a []string) error {
		svc := Service{Name: service}
		if svc.Name != "update" && svc.Name != "llq" && svc.Name != "push" {
			return c.Errf("unknown service %q: update, llq or push", svc.Name)
		}
		svc.TLS = svc.Name == "push" // RFC 8765 sessions are over TLS
		if len(a) != 2 && len(a) != 3 {
			return c.ArgErr()
		}
		name, ok := hostName(a[0])
		if !ok {
			return c.Errf("invalid target %q: a host name is needed", a[0])
		}
		port, err := strconv.ParseUint(a[1], 10, 16)
		if err != nil || port == 0 {
			return c.Errf("invalid port %q", a[1])
		}
		if len(a) == 3 {
			if a[2] != "tls" {
				return c.Errf("unknown flag %q: only tls", a[2])
			}
			svc.TLS = true
		}
		t := Target{Name: name, Port: uint16(port)}
		for _, other := range s.targets[svc] {
			if other == t {
				return c.Errf("%s %s given more than once", svc, t)
			}
		}
		s.targets[svc] = append(s.targets[svc], t)
		return nil
	}, "update", "llq", "push")
	if err != nil {
		return nil, err
	}
	if len(s.targets) == 0 {
		return nil, c.Err("at least one line SERVICE TARGET PORT [tls] is needed")
	}
	return s, nil
}

// hostName returns name lowercase and fully qualified if it is a host name
// (RFC 1123 letters, digits and hyphens; not the root, not an address), as
// an SRV target must be.
func hostName(name string) (string, bool) {
	if net.ParseIP(strings.TrimSuffix(name, ".")) != nil {
		return "", false
	}
	fqdn := dns.CanonicalName(name)
	if _, ok := dns.IsDomainName(fqdn); !ok || fqdn == "." || len(fqdn) > 254 {
		return "", false
	}
	for _, label := range strings.Split(strings.TrimSuffix(fqdn, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
				return "", false
			}
		}
	}
	return fqdn, true
}
