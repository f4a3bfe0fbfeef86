// Package tsigupdate implements the tsig-update plugin: TSIG (RFC 8945) on
// every message for the btmm zone, and RFC 2136 UPDATE within the subtree
// that the signing key owns, taken on listeners of the plugin's own (see
// listener.go).
package tsigupdate

import (
	"context"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyrate"
	"github.com/openbtmm/btmm/plugin/pkg/members"
	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
)

// TsigUpdate is the tsig-update plugin's handler.
type TsigUpdate struct {
	Next plugin.Handler

	zone       members.Zone        // found in OnStartup
	lease      updatelease.Granter // found in OnStartup; nil: no leases
	addrs      rawdns.Addrs        // the update listeners; none: no UPDATEs
	maxRecords int                 // per user
	maxBytes   int                 // per user
	rates      *keyrate.Limiter    // UPDATEs per second, per key
	now        func() time.Time
}

// Name implements plugin.Handler.
func (u *TsigUpdate) Name() string { return pluginName }

// ServeDNS implements plugin.Handler: it checks the TSIG of the queries
// that reach the server block's own listeners, and signs their replies.
// UPDATEs do not get here: the server block does not take them (CoreDNS
// answers NOTIMP), the update listeners do.
func (u *TsigUpdate) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	state := request.Request{W: w, Req: r}
	if !dns.IsSubDomain(u.zone.Zone(), state.Name()) || !tsigauth.Signed(r) {
		return plugin.NextOrFailure(u.Name(), u.Next, ctx, w, r)
	}
	server := metrics.WithServer(ctx)
	res := tsigauth.Check(r, u.zone.Keys, u.now())
	if res.FormErr {
		tsigFailures.WithLabelValues(server, "FORMERR").Inc()
		return u.reply(w, r, dns.RcodeFormatError)
	}
	w = newSigningWriter(w, r, res, u.now)
	if res.Error != 0 {
		log.Debugf("%s from %s with key %s: TSIG %s", dns.OpcodeToString[r.Opcode], state.IP(), res.Key.Name, dns.RcodeToString[int(res.Error)])
		tsigFailures.WithLabelValues(server, dns.RcodeToString[int(res.Error)]).Inc()
		return u.reply(w, r, dns.RcodeNotAuth)
	}
	if user, ok := endpointQuestion(r); ok {
		// Answered on this port as on the update listeners', so that a
		// host can compare what two ports of the server see (a NAT whose
		// mapping depends on the destination gives two ports).
		w.WriteMsg(u.serveEndpoint(r, user, res.Key.Name, state.Proto() == "udp", w.RemoteAddr()))
		return dns.RcodeSuccess, nil
	}
	rcode, err := plugin.NextOrFailure(u.Name(), u.Next, ctx, w, r)
	if !plugin.ClientWrite(rcode) {
		// The server's own error reply would go out unsigned.
		return u.reply(w, r, rcode)
	}
	return rcode, err
}

// reply writes an answer with rcode and says it was written.
func (u *TsigUpdate) reply(w dns.ResponseWriter, r *dns.Msg, rcode int) (int, error) {
	w.WriteMsg(new(dns.Msg).SetRcode(r, rcode))
	return dns.RcodeSuccess, nil
}
