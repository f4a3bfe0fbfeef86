// Package ddullease implements the ddul-lease plugin: the lease of RFC 9664's
// UPDATE-LEASE option (the "DDUL" of RFC 6281 §5.2), clamped into the
// configured bounds and handed to tsig-update, which records it with the
// records an UPDATE adds and echoes it in the reply.
package ddullease

import (
	"context"
	"math"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
	"github.com/openbtmm/btmm/plugin/tsigupdate"
)

// DdulLease is the ddul-lease plugin's handler.
type DdulLease struct {
	Next plugin.Handler

	min, max, def time.Duration
	keyMax        time.Duration
}

// Name implements plugin.Handler.
func (d *DdulLease) Name() string { return pluginName }

// ServeDNS implements plugin.Handler.
func (d *DdulLease) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if r.Opcode != dns.OpcodeUpdate {
		return plugin.NextOrFailure(d.Name(), d.Next, ctx, w, r)
	}
	asked, ok, err := updatelease.From(r)
	if err != nil {
		// tsig-update answers FORMERR, signed if the request was.
		log.Debugf("malformed UPDATE-LEASE option: %v", err)
		ctx = tsigupdate.WithLease(ctx, tsigupdate.Lease{Malformed: true})
		return plugin.NextOrFailure(d.Name(), d.Next, ctx, w, r)
	}
	ctx = tsigupdate.WithLease(ctx, d.grant(asked, ok))
	if ok {
		leases.WithLabelValues(metrics.WithServer(ctx)).Inc()
	}
	return plugin.NextOrFailure(d.Name(), d.Next, ctx, w, r)
}

// grant turns the asked lease into the granted one. Without an option the
// default applies and none is echoed. An 8-octet option is answered with
// an 8-octet one, a 4-octet option with 4 octets, whose lease then covers
// KEY records too (RFC 9664 §4.3).
func (d *DdulLease) grant(asked updatelease.Lease, ok bool) tsigupdate.Lease {
	if !ok {
		return tsigupdate.Lease{Records: d.def, Keys: d.def}
	}
	l := tsigupdate.Lease{Records: clamp(asked.Lease, d.min, d.max)}
	l.Keys = l.Records
	granted := updatelease.Lease{Lease: seconds(l.Records)}
	if asked.HasKeyLease {
		l.Keys = clamp(asked.KeyLease, d.min, d.keyMax)
		granted.KeyLease, granted.HasKeyLease = seconds(l.Keys), true
	}
	l.Reply = granted.Option()
	return l
}

// clamp bounds an asked lease. RFC 6281 and the draft it cites call the
// field signed: a value of 2^31 or more, negative there, is read as the
// shortest lease rather than the longest.
func clamp(secs uint32, lo, hi time.Duration) time.Duration {
	if secs > math.MaxInt32 {
		return lo
	}
	return min(max(time.Duration(secs)*time.Second, lo), hi)
}

func seconds(d time.Duration) uint32 { return uint32(d / time.Second) }
