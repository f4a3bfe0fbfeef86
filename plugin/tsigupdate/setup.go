package tsigupdate

import (
	"strconv"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/openbtmm/btmm/plugin/pkg/corefile"
	"github.com/openbtmm/btmm/plugin/pkg/keyrate"
	"github.com/openbtmm/btmm/plugin/pkg/members"
	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
)

const pluginName = "tsig-update"

var log = clog.NewWithPlugin(pluginName)

// Default quotas per user: a host publishes about six records of some 80
// octets, so these leave room for a hundred hosts and then some.
const (
	defaultMaxRecords = 1000
	defaultMaxBytes   = 256 << 10
)

func init() { plugin.Register(pluginName, setup) }

func setup(c *caddy.Controller) error {
	u, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	cfg := dnsserver.GetConfig(c)
	members.OnStartup(c, pluginName, func(h members.Zone) error {
		u.zone = h
		// ddul-lease, if the block has it, grants each UPDATE's lease.
		u.lease, _ = cfg.Handler("ddul-lease").(updatelease.Granter)
		if u.addrs.Empty() {
			log.Infof("zone %s: no update listener in this server block, which takes no UPDATEs", h.Zone())
			return nil
		}
		if _, running, err := rawdns.Acquire(u.addrs, u.serveRaw); err != nil {
			return err
		} else if !running {
			log.Infof("zone %s: taking UPDATEs on %s", h.Zone(), u.addrs)
		}
		return nil
	})
	c.OnShutdown(func() error {
		if u.addrs.Empty() {
			return nil
		}
		return rawdns.Release(u.addrs)
	})
	cfg.AddPlugin(func(next plugin.Handler) plugin.Handler {
		u.Next = next
		return u
	})
	return nil
}

// parse reads
//
//	tsig-update {
//	    udp         ADDRESS
//	    tcp         ADDRESS
//	    tls         ADDRESS CERT KEY
//	    max_records N
//	    max_bytes   N
//	    rate        PER_SECOND [BURST]
//	}
func parse(c *caddy.Controller) (*TsigUpdate, error) {
	u := &TsigUpdate{maxRecords: defaultMaxRecords, maxBytes: defaultMaxBytes, now: time.Now, rates: keyrate.New(defaultRate, defaultBurst)}
	if err := corefile.NoArgs(c); err != nil {
		return nil, err
	}
	_, err := corefile.Properties(c, func(prop string, a []string) error {
		if ok, err := rawdns.ParseProperty(c, prop, a, &u.addrs); ok {
			return err
		}
		switch prop {
		case "max_records", "max_bytes":
			if len(a) != 1 {
				return c.ArgErr()
			}
			n, err := strconv.Atoi(a[0])
			if err != nil || n <= 0 {
				return c.Errf("%s needs a positive integer, not %q", prop, a[0])
			}
			if prop == "max_records" {
				u.maxRecords = n
			} else {
				u.maxBytes = n
			}
			return nil
		case "rate":
			r, err := keyrate.ParseProperty(c, a)
			if err != nil {
				return err
			}
			u.rates = r
			return nil
		default:
			return corefile.ErrUnknown
		}
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// Defaults of the per-key rate: a host sends an UPDATE when it starts,
// when its network changes and when its lease is three quarters through,
// so even a user with many hosts that all move at once stays well within
// a burst of 50 and 10 a second after it.
const (
	defaultRate  = 10
	defaultBurst = 50
)
