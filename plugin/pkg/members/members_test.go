package members_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/btmm"
	"github.com/openbtmm/btmm/plugin/pkg/members"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
	"github.com/openbtmm/btmm/plugin/pkg/store/storetest"
)

const zone = "members.example.com."

// other is a handler of a directive that is not btmm.
type other struct{}

func (other) Name() string { return "whoami" }
func (other) ServeDNS(context.Context, dns.ResponseWriter, *dns.Msg) (int, error) {
	return dns.RcodeSuccess, nil
}

// block is a server block's config with the handlers given, registered as
// CoreDNS does when it builds the server (before any OnStartup runs).
func block(t *testing.T, handlers ...plugin.Handler) *dnsserver.Config {
	t.Helper()
	cfg := &dnsserver.Config{Zone: zone, Port: "53"}
	for _, h := range handlers {
		cfg.AddPlugin(func(plugin.Handler) plugin.Handler { return h })
	}
	if _, err := dnsserver.NewServer("dns://:53", []*dnsserver.Config{cfg}); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestFind(t *testing.T) {
	b := btmm.NewForTest(zone, nil)
	z, err := members.Find(block(t, other{}, b), "llq")
	if err != nil {
		t.Fatal(err)
	}
	if z != members.Zone(b) || z.Zone() != zone {
		t.Errorf("Find returned %v, want the block's btmm", z)
	}

	_, err = members.Find(block(t, other{}), "llq")
	if err == nil || !strings.Contains(err.Error(), "llq needs the btmm directive in the same server block") {
		t.Errorf("a block without btmm: error %v, want one naming llq and btmm", err)
	}
}

func TestStarted(t *testing.T) {
	// btmm opens its store in its own OnStartup: until then, Started tells
	// the directive that ran too early.
	err := members.Started(btmm.NewForTest(zone, nil), "llq")
	if err == nil || !strings.Contains(err.Error(), "llq started before btmm") {
		t.Errorf("store not open: error %v, want one naming llq and btmm", err)
	}
	st := storetest.New(t, zone, boltstore.Options{})
	if err := members.Started(btmm.NewForTest(zone, st), "llq"); err != nil {
		t.Errorf("store open: %v", err)
	}
}

func TestOnStartup(t *testing.T) {
	b := btmm.NewForTest(zone, nil)
	var got members.Zone
	start := members.Startup(block(t, b), "srv-discovery", func(z members.Zone) error { got = z; return nil })
	if err := start(); err != nil || got != members.Zone(b) {
		t.Errorf("start-up: %v, handed %v; want the block's btmm", err, got)
	}

	// Errors, the callback's or Find's, are the directive's.
	start = members.Startup(block(t, b), "llq", func(members.Zone) error { return errors.New("no socket") })
	if err := start(); err == nil || err.Error() != "plugin/llq: no socket" {
		t.Errorf("failing callback: error %v, want it named as llq's", err)
	}
	called := false
	start = members.Startup(block(t, other{}), "llq", func(members.Zone) error { called = true; return nil })
	if err := start(); err == nil || !strings.HasPrefix(err.Error(), "plugin/llq: llq needs the btmm directive") || called {
		t.Errorf("no btmm: error %v, callback called %t; want Find's error, named, and no call", err, called)
	}
}
