// Package ddullease implements the ddul-lease plugin: the lease of RFC 9664's
// UPDATE-LEASE option (the "DDUL" of RFC 6281 §5.2), clamped into the
// configured bounds, for the plugin that applies UPDATEs (tsig-update),
// which records it with the records an UPDATE adds and echoes it in the
// reply.
package ddullease

import (
	"context"
	"math"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
)

// DdulLease is the ddul-lease plugin's handler. It answers nothing itself:
// the plugin that applies UPDATEs finds it in the server block and asks it
// for each UPDATE's lease (it is an updatelease.Granter).
type DdulLease struct {
	Next plugin.Handler

	min, max, def time.Duration
	keyMax        time.Duration
}

// Name implements plugin.Handler.
func (d *DdulLease) Name() string { return pluginName }

// ServeDNS implements plugin.Handler: every message goes on.
func (d *DdulLease) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	return plugin.NextOrFailure(d.Name(), d.Next, ctx, w, r)
}

// Grant implements updatelease.Granter. Without an option the default
// applies and none is echoed. An 8-octet option is answered with an
// 8-octet one, a 4-octet option with 4 octets, whose lease then covers KEY
// records too (RFC 9664 §4.3).
func (d *DdulLease) Grant(r *dns.Msg) (updatelease.Grant, error) {
	asked, ok, err := updatelease.From(r)
	if err != nil {
		log.Debugf("malformed UPDATE-LEASE option: %v", err)
		return updatelease.Grant{}, err
	}
	if ok {
		leases.Inc()
	}
	return d.grant(asked, ok), nil
}

func (d *DdulLease) grant(asked updatelease.Lease, ok bool) updatelease.Grant {
	if !ok {
		return updatelease.Grant{Records: d.def, Keys: d.def}
	}
	l := updatelease.Grant{Records: clamp(asked.Lease, d.min, d.max)}
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
