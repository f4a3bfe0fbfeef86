package llq

import (
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/openbtmm/btmm/plugin/pkg/corefile"
	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
	"github.com/openbtmm/btmm/plugin/pkg/members"
	"github.com/openbtmm/btmm/plugin/pkg/shared"
)

const pluginName = "llq"

var log = clog.NewWithPlugin(pluginName)

// RFC 6281 §5.3: LLQ leases from 15 minutes to 2 hours.
const (
	defaultMin   = 15 * time.Minute
	defaultMax   = 2 * time.Hour
	defaultLimit = 256
)

func init() { plugin.Register(pluginName, setup) }

// config is one llq block.
type config struct {
	policy                   // zone filled in at start-up
	udp, tcp, tlsAddr string // "" for off
	tls               *tls.Config
}

// listeners names the sockets; servers are shared by it across reloads.
func (c *config) listeners() string { return c.udp + "|" + c.tcp + "|" + c.tlsAddr }

func setup(c *caddy.Controller) error {
	cfg, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	dc := dnsserver.GetConfig(c)
	c.OnStartup(func() error {
		z, err := members.Find(dc, pluginName)
		if err == nil {
			// The LLQ server subscribes to the store as it starts.
			err = members.Started(z, pluginName)
		}
		if err != nil {
			return plugin.Error(pluginName, err)
		}
		p := cfg.policy
		p.zone = z
		if err := acquire(cfg, &p); err != nil {
			return plugin.Error(pluginName, err)
		}
		return nil
	})
	c.OnShutdown(func() error { return release(cfg) })
	return nil
}

// parse reads
//
//	llq {
//	    min   DURATION
//	    max   DURATION
//	    tsig  required|optional
//	    limit N
//	    udp   ADDRESS|off
//	    tcp   ADDRESS|off
//	    tls   ADDRESS CERT KEY
//	}
func parse(c *caddy.Controller) (*config, error) {
	port := ":" + strconv.Itoa(llqopt.Port)
	cfg := &config{policy: policy{min: defaultMin, max: defaultMax, tsigRequired: true, limit: defaultLimit}, udp: port, tcp: port}
	if err := corefile.NoArgs(c); err != nil {
		return nil, err
	}
	_, err := corefile.Properties(c, func(prop string, a []string) error {
		switch prop {
		case "min", "max":
			if len(a) != 1 {
				return c.ArgErr()
			}
			d, err := time.ParseDuration(a[0])
			if err != nil || d < time.Second || d%time.Second != 0 || d > 1<<31*time.Second {
				return c.Errf("%s needs a whole number of seconds, at least 1s (like 15m), not %q", prop, a[0])
			}
			if prop == "min" {
				cfg.min = d
			} else {
				cfg.max = d
			}
		case "tsig":
			if len(a) != 1 || a[0] != "required" && a[0] != "optional" {
				return c.Errf("tsig is required or optional")
			}
			cfg.tsigRequired = a[0] == "required"
		case "limit":
			if len(a) != 1 {
				return c.ArgErr()
			}
			n, err := strconv.Atoi(a[0])
			if err != nil || n < 1 {
				return c.Errf("limit needs a positive integer, not %q", a[0])
			}
			cfg.limit = n
		case "udp", "tcp":
			if len(a) != 1 {
				return c.ArgErr()
			}
			addr := a[0]
			if addr == "off" {
				addr = ""
			} else if _, _, err := net.SplitHostPort(addr); err != nil {
				return c.Errf("%s needs HOST:PORT or off, not %q", prop, a[0])
			}
			if prop == "udp" {
				cfg.udp = addr
			} else {
				cfg.tcp = addr
			}
		case "tls":
			if len(a) != 3 {
				return c.Errf("tls needs ADDRESS CERT KEY")
			}
			if _, _, err := net.SplitHostPort(a[0]); err != nil {
				return c.Errf("tls needs HOST:PORT, not %q", a[0])
			}
			cert, err := tls.LoadX509KeyPair(a[1], a[2])
			if err != nil {
				return c.Errf("tls certificate: %v", err)
			}
			cfg.tlsAddr = a[0]
			cfg.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		default:
			return corefile.ErrUnknown
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if cfg.min > cfg.max {
		return nil, c.Errf("min %v is above max %v", cfg.min, cfg.max)
	}
	if cfg.udp == "" && cfg.tcp == "" && cfg.tlsAddr == "" {
		return nil, c.Err("every listener is off")
	}
	return cfg, nil
}

// The LLQ listeners and their LLQs must outlive a Corefile reload: servers
// are shared by the sockets they listen on (see package shared). A reload
// keeps the server and installs the new block's policy (keys, bounds).
var servers shared.Registry[*Server]

func acquire(cfg *config, p *policy) error {
	_, running, err := servers.Acquire(cfg.listeners(), func() (*Server, error) {
		s := newServer(time.Now)
		if err := s.listen(cfg); err != nil {
			s.Close()
			return nil, err
		}
		s.setPolicy(p)
		s.start()
		return s, nil
	}, func(s *Server) error {
		s.setPolicy(p)
		return nil
	})
	if err == nil && !running {
		log.Infof("listening for LLQs on %s", strings.Trim(strings.ReplaceAll(cfg.listeners(), "||", "|"), "|"))
	}
	return err
}

func release(cfg *config) error {
	return servers.Release(cfg.listeners(), (*Server).Close)
}

// listen opens the configured sockets.
func (s *Server) listen(cfg *config) error {
	if cfg.udp != "" {
		a, err := net.ResolveUDPAddr("udp", cfg.udp)
		if err != nil {
			return err
		}
		if s.udp, err = net.ListenUDP("udp", a); err != nil {
			return err
		}
	}
	if cfg.tcp != "" {
		l, err := net.Listen("tcp", cfg.tcp)
		if err != nil {
			return err
		}
		s.listeners = append(s.listeners, l)
	}
	if cfg.tlsAddr != "" {
		l, err := tls.Listen("tcp", cfg.tlsAddr, cfg.tls)
		if err != nil {
			return err
		}
		s.listeners = append(s.listeners, l)
	}
	return nil
}

// start runs the server's goroutines.
func (s *Server) start() {
	if s.udp != nil {
		s.wg.Add(1)
		go s.serveUDP()
	}
	for _, l := range s.listeners {
		s.wg.Add(1)
		go s.serveTCP(l)
	}
	s.wg.Add(1)
	go s.sweepLoop()
}
