// Package discover finds, with SRV records (RFC 2782), the servers that
// take a user's DNS UPDATEs and hold its Long-Lived Queries, in the order
// that the srv-discovery plugin's README gives.
package discover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// Service is what is looked for.
type Service string

// The services.
const (
	Update Service = "update"
	LLQ    Service = "llq"
	// Push is DNS Push Notifications (RFC 8765 §6.1), over TLS only:
	// _dns-push-tls._tcp.
	Push Service = "push"
)

// Endpoint is a server found for a service.
type Endpoint struct {
	Addr   netip.AddrPort
	Name   string // the SRV target, for TLS's server name
	TLS    bool   // the SRV name was a -tls one: DNS over TLS
	Source string // the SRV name that answered
	TTL    time.Duration
}

// ErrNotOffered says no SRV name for the service answered: the zone does
// not offer it (the client should poll instead of LLQ, say).
var ErrNotOffered = errors.New("discover: service not offered")

// Resolver asks the DNS. Its zero value uses the first nameserver of
// /etc/resolv.conf.
type Resolver struct {
	// Server is host:port of the DNS server to ask; empty: the system's.
	Server  string
	Timeout time.Duration
}

// names are the SRV names to try for svc, in order, under domain: the
// DNS-over-TLS ones, then the plain one.
func names(svc Service, domain string) []struct {
	name string
	tls  bool
} {
	base := "_dns-" + string(svc)
	if svc == Push {
		return []struct {
			name string
			tls  bool
		}{{base + "-tls._tcp." + domain, true}}
	}
	return []struct {
		name string
		tls  bool
	}{
		{base + "-tls._tcp." + domain, true},
		{base + "-tls._udp." + domain, true},
		{base + "._udp." + domain, false},
	}
}

// Find returns the server for svc for the user whose domain is
// userDomain, under zone: first the names under the user's domain, then
// those at the zone's apex. With tlsOnly, plain DNS servers are not taken.
func (r *Resolver) Find(ctx context.Context, svc Service, userDomain, zone string, tlsOnly bool) (Endpoint, error) {
	return r.find(ctx, svc, userDomain, zone, func(isTLS bool) bool { return isTLS || !tlsOnly })
}

// FindPlain is Find for the plain DNS (UDP) server of svc only: the one
// that sees where a host's UDP packets come from.
func (r *Resolver) FindPlain(ctx context.Context, svc Service, userDomain, zone string) (Endpoint, error) {
	return r.find(ctx, svc, userDomain, zone, func(isTLS bool) bool { return !isTLS })
}

// find is Find over the names that want takes (by whether they are TLS's).
func (r *Resolver) find(ctx context.Context, svc Service, userDomain, zone string, want func(tls bool) bool) (Endpoint, error) {
	for _, domain := range []string{dns.Fqdn(userDomain), dns.Fqdn(zone)} {
		for _, n := range names(svc, domain) {
			if !want(n.tls) {
				continue
			}
			ep, err := r.lookup(ctx, n.name)
			if errors.Is(err, ErrNotOffered) {
				continue
			}
			if err != nil {
				return Endpoint{}, err
			}
			ep.TLS = n.tls
			return ep, nil
		}
	}
	return Endpoint{}, fmt.Errorf("%w: no SRV record for %s under %s", ErrNotOffered, svc, userDomain)
}

func (r *Resolver) lookup(ctx context.Context, name string) (Endpoint, error) {
	m, err := r.exchange(ctx, name, dns.TypeSRV)
	if err != nil {
		return Endpoint{}, err
	}
	var srvs []*dns.SRV
	for _, rr := range m.Answer {
		if s, ok := rr.(*dns.SRV); ok {
			srvs = append(srvs, s)
		}
	}
	if len(srvs) == 0 {
		return Endpoint{}, ErrNotOffered
	}
	// RFC 2782: lowest priority first; within one, heavier first (a
	// stable choice, rather than the weighted random one, since the
	// server gives each user one target).
	sort.SliceStable(srvs, func(i, j int) bool {
		if srvs[i].Priority != srvs[j].Priority {
			return srvs[i].Priority < srvs[j].Priority
		}
		return srvs[i].Weight > srvs[j].Weight
	})
	s := srvs[0]
	if s.Target == "." {
		return Endpoint{}, ErrNotOffered
	}
	addr, err := r.address(ctx, s.Target, m.Extra)
	if err != nil {
		return Endpoint{}, fmt.Errorf("discover: address of %s: %w", s.Target, err)
	}
	return Endpoint{Addr: netip.AddrPortFrom(addr, s.Port), Name: dns.CanonicalName(s.Target), Source: name, TTL: time.Duration(s.Hdr.Ttl) * time.Second}, nil
}

// address finds target's address in extra, else asks for A, then AAAA.
func (r *Resolver) address(ctx context.Context, target string, extra []dns.RR) (netip.Addr, error) {
	for _, want := range []uint16{dns.TypeA, dns.TypeAAAA} {
		for _, rr := range extra {
			if dns.CanonicalName(rr.Header().Name) != dns.CanonicalName(target) {
				continue
			}
			switch rr := rr.(type) {
			case *dns.A:
				if want == dns.TypeA {
					a, _ := netip.AddrFromSlice(rr.A.To4())
					return a, nil
				}
			case *dns.AAAA:
				if want == dns.TypeAAAA {
					a, _ := netip.AddrFromSlice(rr.AAAA)
					return a, nil
				}
			}
		}
	}
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		m, err := r.exchange(ctx, target, t)
		if errors.Is(err, ErrNotOffered) {
			continue // no A (NODATA): try AAAA
		}
		if err != nil {
			return netip.Addr{}, err
		}
		for _, rr := range m.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				a, _ := netip.AddrFromSlice(rr.A.To4())
				return a, nil
			case *dns.AAAA:
				a, _ := netip.AddrFromSlice(rr.AAAA)
				return a, nil
			}
		}
	}
	return netip.Addr{}, errors.New("no A or AAAA record")
}

// exchange asks one question; NXDOMAIN and NODATA are ErrNotOffered.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	server := r.Server
	if server == "" {
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(conf.Servers) == 0 {
			return nil, fmt.Errorf("discover: no DNS server configured: %v", err)
		}
		server = net.JoinHostPort(conf.Servers[0], conf.Port)
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 3 * time.Second
	}
	m := new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	c := &dns.Client{Timeout: timeout}
	resp, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return nil, fmt.Errorf("discover: asking %s for %s %s: %w", server, name, dns.TypeToString[qtype], err)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
		if len(resp.Answer) == 0 {
			return resp, ErrNotOffered
		}
		return resp, nil
	case dns.RcodeNameError:
		return resp, ErrNotOffered
	}
	return nil, fmt.Errorf("discover: %s %s: %s", name, dns.TypeToString[qtype], dns.RcodeToString[resp.Rcode])
}

// String shows an endpoint for logs.
func (e Endpoint) String() string {
	t := "dns"
	if e.TLS {
		t = "dns+tls"
	}
	return t + "://" + e.Name + "@" + e.Addr.String() + " (" + e.Source + ", ttl " + strconv.Itoa(int(e.TTL/time.Second)) + "s)"
}
