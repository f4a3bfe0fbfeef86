package llq

import (
	"strconv"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/openbtmm/btmm/plugin/pkg/corefile"
	"github.com/openbtmm/btmm/plugin/pkg/keyrate"
	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
	"github.com/openbtmm/btmm/plugin/pkg/members"
	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
	"github.com/openbtmm/btmm/plugin/pkg/shared"
)

const pluginName = "llq"

var log = clog.NewWithPlugin(pluginName)

// RFC 6281 §5.3: LLQ leases from 15 minutes to 2 hours.
const (
	defaultMin   = 15 * time.Minute
	defaultMax   = 2 * time.Hour
	defaultLimit = 256
	// A watcher sets up one LLQ for the host list and four for each other
	// host at once, and again after a reconnection: 20 a second in bursts
	// of 100 is a large user's start, with room.
	defaultSetupRate  = 20
	defaultSetupBurst = 100
)

func init() { plugin.Register(pluginName, setup) }

// config is one llq block.
type config struct {
	policy // zone filled in at start-up
	addrs  rawdns.Addrs
}

func setup(c *caddy.Controller) error {
	cfg, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	members.OnStartup(c, pluginName, func(z members.Zone) error {
		// The LLQ server subscribes to the store as it starts.
		if err := members.Started(z, pluginName); err != nil {
			return err
		}
		p := cfg.policy
		p.zone = z
		return acquire(cfg, &p)
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
//	    rate  PER_SECOND [BURST]
//	    udp   ADDRESS|off
//	    tcp   ADDRESS|off
//	    tls   ADDRESS CERT KEY
//	}
func parse(c *caddy.Controller) (*config, error) {
	port := ":" + strconv.Itoa(llqopt.Port)
	cfg := &config{policy: policy{min: defaultMin, max: defaultMax, tsigRequired: true, limit: defaultLimit, setups: keyrate.New(defaultSetupRate, defaultSetupBurst)}, addrs: rawdns.Addrs{UDP: port, TCP: port}}
	if err := corefile.NoArgs(c); err != nil {
		return nil, err
	}
	_, err := corefile.Properties(c, func(prop string, a []string) error {
		if ok, err := rawdns.ParseProperty(c, prop, a, &cfg.addrs); ok {
			return err
		}
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
		case "rate":
			r, err := keyrate.ParseProperty(c, a)
			if err != nil {
				return err
			}
			cfg.setups = r
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
	if cfg.addrs.Empty() {
		return nil, c.Err("every listener is off")
	}
	return cfg, nil
}

// The LLQ listeners and their LLQs must outlive a Corefile reload: servers
// are shared by the sockets they listen on (see package shared). A reload
// keeps the server and installs the new block's policy (keys, bounds).
// The registry is llq's own, not rawdns.Acquire's, because what outlives
// the reload is the LLQ table with its listeners; and so an llq block
// naming tsig-update's sockets fails to listen rather than take them over.
var servers shared.Registry[*Server]

func acquire(cfg *config, p *policy) error {
	_, running, err := servers.Acquire(cfg.addrs.String(), func() (*Server, error) {
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
		log.Infof("listening for LLQs on %s", cfg.addrs)
	}
	return err
}

func release(cfg *config) error {
	return servers.Release(cfg.addrs.String(), (*Server).Close)
}

// listen opens the configured sockets.
func (s *Server) listen(cfg *config) error {
	raw, err := rawdns.Listen(cfg.addrs)
	if err != nil {
		return err
	}
	raw.IdleTimeout = idleTimeout
	raw.ConnClosed = s.connClosed
	s.raw = raw
	return nil
}

// start runs the server's goroutines.
func (s *Server) start() {
	s.raw.Serve(s.serveRaw)
	s.wg.Add(1)
	go s.sweepLoop()
}
