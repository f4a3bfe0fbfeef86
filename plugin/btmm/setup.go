package btmm

import (
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/corefile"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/store"
)

const pluginName = "btmm"

var log = clog.NewWithPlugin(pluginName)

func init() { plugin.Register(pluginName, setup) }

func setup(c *caddy.Controller) error {
	b, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	cfg := dnsserver.GetConfig(c)
	// The keys are not given to the DNS server's TsigSecret map: it is
	// fixed when the server starts, and users come and go while it runs.
	// tsig-update checks every signature itself (package tsigauth).
	c.OnStartup(func() error {
		s, err := acquireStore(b.storeKey(), func() (store.Store, error) { return b.openStore() }, b.zone)
		if err != nil {
			return plugin.Error(pluginName, err)
		}
		b.store = s
		log.Infof("zone %s: %d user keys in the key file, store %s", b.zone, len(b.keys), b.storeKey())
		if b.adminPath != "" {
			if err := acquireAdmin(b); err != nil {
				return plugin.Error(pluginName, err)
			}
		}
		return nil
	})
	c.OnShutdown(func() error {
		if b.adminPath != "" {
			releaseAdmin(b.adminPath)
		}
		return releaseStore(b.storeKey())
	})
	cfg.AddPlugin(func(next plugin.Handler) plugin.Handler {
		b.Next = next
		return b
	})
	return nil
}

// parse reads
//
//	btmm [ZONE] {
//	    keys  FILE
//	    admin SOCKET
//	    store FILE
//	    etcd  ENDPOINT... {
//	        prefix PATH
//	        tls    [CERT KEY] CA
//	    }
//	    ns    NAME [ADDRESS...]
//	}
func parse(c *caddy.Controller) (*Btmm, error) {
	c.Next() // "btmm"
	args := c.RemainingArgs()
	var zone string
	switch len(args) {
	case 0:
		if len(c.ServerBlockKeys) != 1 {
			return nil, c.Err("a zone is needed when the server block has more than one")
		}
		zone = c.ServerBlockKeys[0]
	case 1:
		zone = args[0]
	default:
		return nil, c.ArgErr()
	}
	hosts := plugin.Host(zone).NormalizeExact()
	if len(hosts) != 1 {
		return nil, c.Errf("invalid zone %q", zone)
	}
	zone = dns.CanonicalName(hosts[0])
	if _, ok := dns.IsDomainName(zone); !ok {
		return nil, c.Errf("invalid zone %q", zone)
	}

	b := &Btmm{zone: zone, keys: make(map[string]keyfile.Key), now: time.Now}
	root := dnsserver.GetConfig(c).Root
	inRoot := func(p string) string {
		if root != "" && !filepath.IsAbs(p) {
			return filepath.Join(root, p)
		}
		return p
	}
	var keysPath string
	_, err := corefile.Properties(c, func(prop string, a []string) error {
		switch prop {
		case "keys", "store", "admin":
			if len(a) != 1 {
				return c.ArgErr()
			}
			switch prop {
			case "keys":
				keysPath = inRoot(a[0])
			case "store":
				b.storePath = inRoot(a[0])
			case "admin":
				b.adminPath = inRoot(a[0])
			}
		case "ns":
			if len(a) == 0 {
				return c.ArgErr()
			}
			ns := nameServer{name: dns.CanonicalName(a[0])}
			if _, ok := dns.IsDomainName(ns.name); !ok {
				return c.Errf("invalid name server %q", a[0])
			}
			for _, addr := range a[1:] {
				ip := net.ParseIP(addr)
				if ip == nil {
					return c.Errf("invalid address %q for name server %s", addr, a[0])
				}
				ns.addrs = append(ns.addrs, ip)
			}
			if len(ns.addrs) == 0 && dns.IsSubDomain(zone, ns.name) {
				return c.Errf("name server %s is inside the zone and needs an address", ns.name)
			}
			b.ns = append(b.ns, ns)
		case "etcd":
			e, err := parseEtcd(c, a, zone, inRoot)
			if err != nil {
				return err
			}
			b.etcd = e
		default:
			return corefile.ErrUnknown
		}
		return nil
	}, "ns")
	if err != nil {
		return nil, err
	}
	var keys []keyfile.Key
	if keysPath != "" {
		if keys, err = keyfile.ParseFile(keysPath); err != nil {
			return nil, err
		}
	}
	for _, k := range keys {
		if !dns.IsSubDomain(zone, k.Name) || k.Name == zone {
			return nil, fmt.Errorf("%s:%d: key %s is not a user's domain under %s", keysPath, k.Line, k.Name, zone)
		}
		b.keys[k.Name] = k
	}
	if b.etcd != nil && b.storePath != "" {
		return nil, c.Err("store FILE and etcd are alternatives: the zone lives in one of them")
	}
	if b.storePath == "" && b.etcd == nil {
		b.storePath = inRoot(zone + "db")
	}
	return b, nil
}
