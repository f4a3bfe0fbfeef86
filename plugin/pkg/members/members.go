// Package members is where the btmm directive and the plugins beside it in
// a server block (tsig-update, llq, srv-discovery) meet, without importing
// each other: btmm's handler implements Zone, and the others find it with
// Find when the server starts.
package members

import (
	"fmt"
	"hash/fnv"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// Zone is the members zone as the btmm directive serves it.
type Zone interface {
	// Zone returns the apex, lowercase and fully qualified.
	Zone() string
	// Store returns the zone's records; nil until btmm has started.
	Store() store.Store
	// Keys returns the keys the user named name may sign with: none for
	// a name that is no user's, two while the user's key is being rotated
	// (the new first).
	Keys(name string) []keyfile.Key
	// UserZone returns the user's domain that name (lowercase, fully
	// qualified) is at or under: the name of a user's key.
	UserZone(name string) (string, bool)
	// Answer fills m's sections with the zone's answer to qname and qtype,
	// and returns the RCODE.
	Answer(m *dns.Msg, qname string, qtype uint16) (int, error)
}

// Directive is the name of the directive whose handler is the Zone.
const Directive = "btmm"

// Find returns the Zone of cfg's server block, for the directive who, or
// an error that says plainly that the block has no btmm directive. Call it
// from an OnStartup function (handlers are registered by then). The Zone's
// Store is set in btmm's own OnStartup: a directive that needs the store
// at start-up must come after btmm in the directive order, and checks
// with Started.
func Find(cfg *dnsserver.Config, who string) (Zone, error) {
	z, ok := cfg.Handler(Directive).(Zone)
	if !ok {
		return nil, fmt.Errorf("%s needs the %s directive in the same server block", who, Directive)
	}
	return z, nil
}

// Started returns an error naming who unless z's store is open: who's
// OnStartup ran before btmm's, which the directive order must prevent.
func Started(z Zone, who string) error {
	if z.Store() == nil {
		return fmt.Errorf("%s started before %s: %s must come earlier in the directive order", who, Directive, Directive)
	}
	return nil
}

// OnStartup has fn run as the server starts, with the Zone of c's server
// block, for the directive who: the start-up of every directive beside
// btmm. An error, Find's or fn's, is reported as who's.
func OnStartup(c *caddy.Controller, who string, fn func(Zone) error) {
	c.OnStartup(startup(dnsserver.GetConfig(c), who, fn))
}

func startup(cfg *dnsserver.Config, who string, fn func(Zone) error) func() error {
	return func() error {
		z, err := Find(cfg, who)
		if err == nil {
			err = fn(z)
		}
		if err != nil {
			return plugin.Error(who, err)
		}
		return nil
	}
}

// SecretTag tells a user's secrets apart in 4 octets, for state that must
// remember which of a user's keys a client used (during a rotation there
// are two) without holding a copy of the secret: an FNV-1a hash of the
// secret's text.
func SecretTag(secret string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(secret))
	return h.Sum32()
}

// KeyByTag returns the key named name whose secret has the tag, if its
// user may still sign with it: false once the user is revoked, or the key
// replaced and its overlap over.
func KeyByTag(z Zone, name string, tag uint32) (keyfile.Key, bool) {
	for _, k := range z.Keys(name) {
		if SecretTag(k.Secret) == tag {
			return k, true
		}
	}
	return keyfile.Key{}, false
}
