// Package endpoint is the wire format of the server-observed endpoint: a
// host behind a NAT that speaks no mapping protocol (a carrier-grade NAT,
// NAT behind NAT) asks the server, from its tunnel's own UDP port, which
// address and port the server saw the question come from, and publishes
// that. It is ordinary DNS, signed with the user's TSIG key both ways:
//
//	query:  _btmm-endpoint._udp.USER.ZONE.  IN SRV   (TSIG: USER.ZONE's key)
//	reply:  _btmm-endpoint._udp.USER.ZONE.  0 IN SRV 0 0 PORT _btmm-endpoint._udp.USER.ZONE.
//	        _btmm-endpoint._udp.USER.ZONE.  0 IN A    ADDRESS   (or AAAA, in the additional section)
//
// The SRV's port and its target's address are the source of the query as
// the server received it. TTL 0: the answer is for this question only,
// and never cached. The server answers it on its update listeners (see
// tsig-update), over UDP, only to a query signed with the key of the user
// whose domain the name is in; the reply is signed, so an attacker on the
// path cannot feed a host a wrong endpoint without the key.
package endpoint

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// Label is the start of the name asked, below the user's domain.
const Label = "_btmm-endpoint._udp."

// Name returns the name a host of the user whose domain is user asks.
func Name(user string) string { return Label + dns.CanonicalName(user) }

// User returns the user's domain of a question name, and whether the name
// is an endpoint question at all.
func User(qname string) (string, bool) {
	name := dns.CanonicalName(qname)
	if !strings.HasPrefix(name, Label) || len(name) == len(Label) {
		return "", false
	}
	return name[len(Label):], true
}

// Query returns the question for user's domain, to be signed with the
// user's key.
func Query(user string) *dns.Msg {
	m := new(dns.Msg).SetQuestion(Name(user), dns.TypeSRV)
	m.RecursionDesired = false
	return m
}

// Reply fills m, the reply to a question for name (as asked), with the
// endpoint observed.
func Reply(m *dns.Msg, name string, observed netip.AddrPort) {
	hdr := dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 0}
	m.Authoritative = true
	m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr, Port: observed.Port(), Target: dns.Fqdn(name)})
	addr := observed.Addr().Unmap()
	if addr.Is4() {
		hdr.Rrtype = dns.TypeA
		m.Extra = append(m.Extra, &dns.A{Hdr: hdr, A: addr.AsSlice()})
	} else {
		hdr.Rrtype = dns.TypeAAAA
		m.Extra = append(m.Extra, &dns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()})
	}
}

// ErrNoEndpoint is what Parse says of a reply that holds no endpoint.
var ErrNoEndpoint = errors.New("endpoint: the reply holds no endpoint")

// Parse reads the endpoint from the reply r to the question for user:
// exactly one SRV at the name asked, whose target is that name, and one
// address record there.
func Parse(r *dns.Msg, user string) (netip.AddrPort, error) {
	if r.Rcode != dns.RcodeSuccess {
		return netip.AddrPort{}, fmt.Errorf("endpoint: the server answered %s", dns.RcodeToString[r.Rcode])
	}
	name := Name(user)
	var srv *dns.SRV
	for _, rr := range r.Answer {
		if s, ok := rr.(*dns.SRV); ok && dns.CanonicalName(s.Hdr.Name) == name {
			if srv != nil {
				return netip.AddrPort{}, fmt.Errorf("%w: more than one SRV", ErrNoEndpoint)
			}
			srv = s
		}
	}
	if srv == nil || dns.CanonicalName(srv.Target) != name || srv.Port == 0 {
		return netip.AddrPort{}, ErrNoEndpoint
	}
	var addr netip.Addr
	for _, rr := range r.Extra {
		if dns.CanonicalName(rr.Header().Name) != name {
			continue
		}
		var a netip.Addr
		switch rr := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(rr.A.To4())
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(rr.AAAA.To16())
		default:
			continue
		}
		if addr.IsValid() || !a.IsValid() {
			return netip.AddrPort{}, fmt.Errorf("%w: not exactly one address", ErrNoEndpoint)
		}
		addr = a.Unmap()
	}
	if !addr.IsValid() {
		return netip.AddrPort{}, fmt.Errorf("%w: no address", ErrNoEndpoint)
	}
	return netip.AddrPortFrom(addr, srv.Port), nil
}
