package dnspush

import (
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/openbtmm/btmm/plugin/pkg/corefile"
	"github.com/openbtmm/btmm/plugin/pkg/members"
	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
	"github.com/openbtmm/btmm/plugin/pkg/shared"
)

const pluginName = "dns-push"

var log = clog.NewWithPlugin(pluginName)

// Defaults. RFC 8490 §6.5.2: a keepalive interval under 10 s is not
// allowed; a client with subscriptions is active, so the inactivity
// timeout only ends sessions that hold none.
const (
	defaultKeepalive  = 60 * time.Second
	minKeepalive      = 10 * time.Second
	defaultInactivity = 30 * time.Second
	defaultLimit      = 256
)

func init() { plugin.Register(pluginName, setup) }

// config is one dns-push block.
type config struct {
	policy
	addrs rawdns.Addrs
}

func setup(c *caddy.Controller) error {
	cfg, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	members.OnStartup(c, pluginName, func(z members.Zone) error {
		if err := members.Started(z, pluginName); err != nil {
			return err
		}
		p := cfg.policy
		p.zone = z
		return acquire(cfg, &p)
	})
	c.OnShutdown(func() error { return servers.Release(cfg.addrs.String(), (*Server).Close) })
	return nil
}

// parse reads
//
//	dns-push {
//	    tls        ADDRESS CERT KEY
//	    tcp        ADDRESS
//	    tsig       required|optional
//	    limit      N
//	    keepalive  DURATION
//	    inactivity DURATION
//	}
func parse(c *caddy.Controller) (*config, error) {
	cfg := &config{policy: policy{tsigRequired: true, limit: defaultLimit, keepalive: defaultKeepalive, inactivity: defaultInactivity}}
	if err := corefile.NoArgs(c); err != nil {
		return nil, err
	}
	_, err := corefile.Properties(c, func(prop string, a []string) error {
		if prop != "udp" {
			if ok, err := rawdns.ParseProperty(c, prop, a, &cfg.addrs); ok {
				return err
			}
		}
		switch prop {
		case "tsig":
			required, err := corefile.TSIGRequired(c, a)
			if err != nil {
				return err
			}
			cfg.tsigRequired = required
		case "limit":
			n, err := corefile.PositiveInt(c, prop, a)
			if err != nil {
				return err
			}
			cfg.limit = n
		case "keepalive", "inactivity":
			if len(a) != 1 {
				return c.ArgErr()
			}
			d, err := time.ParseDuration(a[0])
			if err != nil || d < time.Second || d > time.Duration(1<<31)*time.Millisecond {
				return c.Errf("%s needs a duration of at least 1s, not %q", prop, a[0])
			}
			if prop == "keepalive" {
				if d < minKeepalive {
					return c.Errf("keepalive must be at least %v (RFC 8490 §6.5.2), not %v", minKeepalive, d)
				}
				cfg.keepalive = d
			} else {
				cfg.inactivity = d
			}
		default:
			return corefile.ErrUnknown
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if cfg.addrs.TCP == "" && cfg.addrs.TLS == "" {
		return nil, c.Err("dns-push needs a listener: tls ADDRESS CERT KEY (or tcp ADDRESS behind a TLS proxy)")
	}
	return cfg, nil
}

// The listeners and their sessions outlive a Corefile reload, shared by
// the sockets they listen on; a reload installs the new block's policy.
var servers shared.Registry[*Server]

func acquire(cfg *config, p *policy) error {
	_, running, err := servers.Acquire(cfg.addrs.String(), func() (*Server, error) {
		return listen(cfg.addrs, p)
	}, func(s *Server) error {
		s.setPolicy(p)
		return nil
	})
	if err == nil && !running {
		log.Infof("listening for DNS Push sessions on %s", cfg.addrs)
	}
	return err
}
