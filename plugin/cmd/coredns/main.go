// Command coredns is CoreDNS with the Back to My Mac plugins compiled in.
//
// It is CoreDNS's own main (coremain.Run) over a curated set of CoreDNS's
// standard plugins: enough to run an authoritative members zone, serve it over
// TLS, watch it and reload it, but no cloud or Kubernetes backends, so that
// the binary builds in a few minutes.
package main

import (
	"slices"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// CoreDNS's own plugins, in no particular order: the directive order
	// below decides where each sits in the chain.
	_ "github.com/coredns/coredns/plugin/any"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/bufsize"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/cancel"
	_ "github.com/coredns/coredns/plugin/chaos"
	_ "github.com/coredns/coredns/plugin/debug"
	_ "github.com/coredns/coredns/plugin/dynupdate"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/file"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/multisocket"
	_ "github.com/coredns/coredns/plugin/nsid"
	_ "github.com/coredns/coredns/plugin/pprof"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/root"
	_ "github.com/coredns/coredns/plugin/timeouts"
	_ "github.com/coredns/coredns/plugin/tls"
	_ "github.com/coredns/coredns/plugin/transfer"
	_ "github.com/coredns/coredns/plugin/tsig"
	_ "github.com/coredns/coredns/plugin/whoami"

	// This project's plugins.
	_ "github.com/openbtmm/btmm/plugin/btmm"
	_ "github.com/openbtmm/btmm/plugin/ddullease"
	_ "github.com/openbtmm/btmm/plugin/dnspush"
	_ "github.com/openbtmm/btmm/plugin/llq"
	_ "github.com/openbtmm/btmm/plugin/srvdiscovery"
	_ "github.com/openbtmm/btmm/plugin/tsigupdate"
)

// btmmDirectives sit in the chain in this order, just before CoreDNS's own
// dynupdate and file. The plugins find each other in the server block at
// start-up, not through the chain, so the order matters little:
// tsig-update comes before srv-discovery and btmm because queries on its
// update listeners are answered by the plugins after it, and llq and
// dns-push, which add no handler (they have listeners of their own), are
// set up after btmm, whose store they watch from start-up on.
var btmmDirectives = []string{"ddul-lease", "tsig-update", "srv-discovery", "btmm", "llq", "dns-push"}

func init() {
	at := slices.Index(dnsserver.Directives, "dynupdate")
	if at < 0 {
		panic("coredns: no dynupdate directive to insert the btmm plugins before")
	}
	dnsserver.Directives = slices.Insert(slices.Clone(dnsserver.Directives), at, btmmDirectives...)
}

func main() { coremain.Run() }
