// Package tsigupdate implements the tsig-update plugin: TSIG (RFC 8945) on
// every message for the btmm zone, and RFC 2136 UPDATE within the subtree
// that the signing key owns.
package tsigupdate

import (
	"context"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/btmm"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

// TsigUpdate is the tsig-update plugin's handler.
type TsigUpdate struct {
	Next plugin.Handler

	zone       *btmm.Btmm // found in OnStartup
	maxRecords int        // per user
	maxBytes   int        // per user
	now        func() time.Time
}

// Name implements plugin.Handler.
func (u *TsigUpdate) Name() string { return pluginName }

// ServeDNS implements plugin.Handler.
func (u *TsigUpdate) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	state := request.Request{W: w, Req: r}
	if !dns.IsSubDomain(u.zone.Zone(), state.Name()) {
		return plugin.NextOrFailure(u.Name(), u.Next, ctx, w, r)
	}
	server := metrics.WithServer(ctx)

	var key string
	if tsigauth.Signed(r) {
		res := tsigauth.Check(w, r, u.zone.TSIGKey, u.now())
		if res.FormErr {
			tsigFailures.WithLabelValues(server, "FORMERR").Inc()
			return u.reply(w, r, dns.RcodeFormatError, nil)
		}
		w = tsigauth.NewWriter(w, r, res, u.now)
		if res.Error != 0 {
			log.Debugf("%s from %s with key %s: TSIG %s", dns.OpcodeToString[r.Opcode], state.IP(), res.Key.Name, dns.RcodeToString[int(res.Error)])
			tsigFailures.WithLabelValues(server, dns.RcodeToString[int(res.Error)]).Inc()
			return u.reply(w, r, dns.RcodeNotAuth, nil)
		}
		key = res.Key.Name
	}

	if r.Opcode != dns.OpcodeUpdate {
		rcode, err := plugin.NextOrFailure(u.Name(), u.Next, ctx, w, r)
		if key != "" && !plugin.ClientWrite(rcode) {
			// The server's own error reply would go out unsigned.
			return u.reply(w, r, rcode, nil)
		}
		return rcode, err
	}

	rcode := dns.RcodeRefused
	lease := LeaseFrom(ctx)
	switch {
	case key == "":
		log.Debugf("unsigned UPDATE from %s refused", state.IP())
	case lease.Malformed:
		rcode = dns.RcodeFormatError
	default:
		var err error
		rcode, err = u.update(u.zone.Store(), key, r, lease)
		if err != nil {
			log.Errorf("UPDATE with key %s: %v", key, err)
		}
	}
	updates.WithLabelValues(server, dns.RcodeToString[rcode]).Inc()
	if rcode != dns.RcodeSuccess {
		return u.reply(w, r, rcode, nil)
	}
	return u.reply(w, r, rcode, lease.Reply)
}

// reply writes an answer with rcode and the zone (question) section, as
// RFC 2136 §3.8 allows, with opt in its OPT RR if not nil, and says it was
// written.
func (u *TsigUpdate) reply(w dns.ResponseWriter, r *dns.Msg, rcode int, opt dns.EDNS0) (int, error) {
	m := new(dns.Msg)
	m.SetRcode(r, rcode)
	if opt != nil {
		size := uint16(dns.MinMsgSize)
		if o := r.IsEdns0(); o != nil {
			size = o.UDPSize()
		}
		m.SetEdns0(size, false)
		o := m.IsEdns0()
		o.Option = append(o.Option, opt)
	}
	w.WriteMsg(m)
	return dns.RcodeSuccess, nil
}
