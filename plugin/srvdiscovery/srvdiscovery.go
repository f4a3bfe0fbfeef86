// Package srvdiscovery implements the srv-discovery plugin: the SRV records
// by which Back to My Mac clients find the servers that take their DNS
// UPDATEs and their Long-Lived Queries, for every user of the btmm zone.
package srvdiscovery

import (
	"context"
	"strconv"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/members"
)

// ttl is the TTL of the SRV answers, the same as that of btmm's records: a
// target taken out of the Corefile is forgotten by caches within a minute.
const ttl = 60

// Service is what a server does for clients: "update", "llq" or "push"
// (DNS Push, over TLS only), over TLS or not.
type Service struct {
	Name string // "update", "llq" or "push"
	TLS  bool
}

// String returns the service as the SRV service label has it, without the
// underscore: "dns-update", "dns-llq-tls", ...
func (s Service) String() string {
	if s.TLS {
		return "dns-" + s.Name + "-tls"
	}
	return "dns-" + s.Name
}

// names maps the first two labels of every SRV name answered to the service
// it finds. RFC 6281 §5.2 and §5.3 ask for the -tls services with _udp;
// Apple's code and RFC 8765 use _tcp for them. The public services have one
// spelling each: _dns-update._udp (Apple's code) and _dns-llq._udp (RFC 8764
// §4, Apple's code).
var names = map[string]Service{
	"_dns-update._udp":     {"update", false},
	"_dns-update-tls._tcp": {"update", true},
	"_dns-update-tls._udp": {"update", true},
	"_dns-llq._udp":        {"llq", false},
	"_dns-llq-tls._tcp":    {"llq", true},
	"_dns-llq-tls._udp":    {"llq", true},
	"_dns-push-tls._tcp":   {"push", true}, // RFC 8765 §6.1
}

// SrvDiscovery is the srv-discovery plugin's handler.
type SrvDiscovery struct {
	Next plugin.Handler

	zone    members.Zone // found in OnStartup
	targets map[Service][]Target
}

// Name implements plugin.Handler.
func (s *SrvDiscovery) Name() string { return pluginName }

// ServeDNS implements plugin.Handler.
func (s *SrvDiscovery) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	state := request.Request{W: w, Req: r}
	if r.Opcode != dns.OpcodeQuery || state.QType() != dns.TypeSRV || state.QClass() != dns.ClassINET {
		return plugin.NextOrFailure(s.Name(), s.Next, ctx, w, r)
	}
	svc, user, ok := s.match(state.Name())
	if !ok {
		return plugin.NextOrFailure(s.Name(), s.Next, ctx, w, r)
	}
	targets := s.targets[svc]
	if len(targets) == 0 {
		// Not offered: btmm says so (NXDOMAIN, or NODATA if the name
		// holds other records).
		return plugin.NextOrFailure(s.Name(), s.Next, ctx, w, r)
	}
	t := Choose(user, targets)

	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.Answer = []dns.RR{&dns.SRV{
		Hdr:      dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
		Priority: 0, Weight: 0, Port: t.Port, Target: t.Name,
	}}
	extra, err := s.addresses(t.Name)
	if err != nil {
		return dns.RcodeServerFailure, plugin.Error(s.Name(), err)
	}
	m.Extra = extra
	answers.WithLabelValues(metrics.WithServer(ctx), svc.String(), t.Name, strconv.Itoa(int(t.Port))).Inc()
	w.WriteMsg(m)
	return dns.RcodeSuccess, nil
}

// match returns the service and the user that qname (lowercase) asks for:
// qname is _SERVICE._PROTO.USER.ZONE or _SERVICE._PROTO.ZONE (the apex,
// whose user is "").
func (s *SrvDiscovery) match(qname string) (svc Service, user string, ok bool) {
	zone := s.zone.Zone()
	if !dns.IsSubDomain(zone, qname) {
		return Service{}, "", false
	}
	labels := dns.SplitDomainName(qname)
	switch len(labels) - dns.CountLabel(zone) {
	case 2:
	case 3:
		user = labels[2]
	default:
		return Service{}, "", false
	}
	svc, ok = names[labels[0]+"."+labels[1]]
	return svc, user, ok
}

// addresses returns the A and AAAA records of target if it is in the zone,
// as btmm answers them, for the additional section.
func (s *SrvDiscovery) addresses(target string) ([]dns.RR, error) {
	target = dns.CanonicalName(target)
	if !dns.IsSubDomain(s.zone.Zone(), target) {
		return nil, nil
	}
	var out []dns.RR
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		scratch := new(dns.Msg)
		if _, err := s.zone.Answer(scratch, target, qtype); err != nil {
			return nil, err
		}
		for _, rr := range scratch.Answer {
			// An SRV target must not be an alias (RFC 2782): what a
			// CNAME at the target leads to is not glue.
			if h := rr.Header(); h.Rrtype == qtype && dns.CanonicalName(h.Name) == target {
				out = append(out, rr)
			}
		}
	}
	return out, nil
}
