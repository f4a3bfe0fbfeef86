// Package publish keeps a host's records in its owner's domain (RFC 6281
// §5.2): one TSIG-signed UPDATE with an UPDATE-LEASE option (RFC 9664)
// that replaces them, refreshed before the lease ends, sent again at once
// after any change, and a last one that removes them on a clean exit.
package publish

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/dnssd"
)

// Host is what a host publishes about itself.
type Host struct {
	Zone   string // members.example.com.
	User   string // alice
	Name   string // laptop
	Label  string // AutoTunnel-02-11-22-FF-FE-33-44-55
	ULA    netip.Addr
	Public netip.AddrPort // the NAT's external address and mapped port, or the host's own
	// Public6 is the host's global IPv6 address and its tunnel port, if
	// it has one. Public or Public6 (or both) must be set.
	Public6 netip.AddrPort
	Key     string // the static X25519 public key, base64
	TTL     uint32 // of every record; short, since hosts move
	// Services are the host's services (RFC 6763), each published as an
	// instance named after the host.
	Services []dnssd.Service
	// Certs are the host's certificates as TXT strings ("cert=…",
	// package hostcert), published beside pk=.
	Certs []string
	// Extra records are published with the host's and renewed with them,
	// but never deleted by it: names the user's hosts share (the
	// revocation list), which their leases end.
	Extra []dns.RR
}

// The TXT record's version and the ciphers the tunnel offers.
const (
	txtVersion = "txtvers=1"
	ciphers    = "ciphers=aes256gcm,chacha20poly1305"
)

// endpoints describes where the host is published, for logs.
func (h Host) endpoints() string { return EndpointsString(h.Public, h.Public6) }

// EndpointsString describes a host's IPv4 and IPv6 endpoints, either of
// which may be invalid, for logs and status: "23.2.2.2:4500 and
// [2001:db8:2:1::b]:4500", or the one it has.
func EndpointsString(v4, v6 netip.AddrPort) string {
	switch {
	case v4.IsValid() && v6.IsValid():
		return v4.String() + " and " + v6.String()
	case v6.IsValid():
		return v6.String()
	}
	return v4.String()
}

// domain is the user's domain, USER.ZONE.
func (h Host) domain() string {
	return dns.Fqdn(h.User + "." + strings.TrimSuffix(dns.Fqdn(h.Zone), "."))
}

// HostName is HOST.USER.ZONE.
func (h Host) HostName() string { return dns.Fqdn(h.Name + "." + h.domain()) }

// SRVName is _autotunnel._udp.HOST.USER.ZONE.
func (h Host) SRVName() string { return "_autotunnel._udp." + h.HostName() }

// LabelName is AutoTunnel-….USER.ZONE, the SRV target.
func (h Host) LabelName() string { return dns.Fqdn(h.Label + "." + h.domain()) }

// ListName is _autotunnel._udp.USER.ZONE, where the host list is.
func (h Host) ListName() string { return "_autotunnel._udp." + h.domain() }

// Records returns the records of RFC 6281 §3 and §5.2, for user alice and
// host laptop:
//
//	_autotunnel._udp.laptop.alice.ZONE. SRV 0 0 PORT AutoTunnel-….alice.ZONE.
//	AutoTunnel-….alice.ZONE.           A    PUBLIC-IPv4
//	AutoTunnel-….alice.ZONE.           AAAA ULA
//	AutoTunnel-….alice.ZONE.           AAAA PUBLIC-IPv6 (if the host has one)
//	AutoTunnel-….alice.ZONE.           TXT  "txtvers=1" "pk=KEY" ["cert=CERT" ...] "ciphers=…" ["port6=PORT"]
//	laptop.alice.ZONE.                 AAAA ULA
//	_autotunnel._udp.alice.ZONE.       PTR  laptop.alice.ZONE.
//
// The SRV's target has two AAAA records when the host has a global IPv6
// address: the ULA (inside fc00::/7, RFC 4193), where the tunnel leads,
// and the global address, where the tunnel's packets go. A reader tells
// them apart by prefix. PORT is the IPv4 endpoint's (the NAT's mapped
// port); the IPv6 endpoint, with no NAT in front of it, is at the
// tunnel's own port, which the TXT record's port6= gives when it
// differs. A host with IPv6 alone has no A record, and its SRV gives the
// IPv6 port.
func (h Host) Records() ([]dns.RR, error) {
	if h.Public.IsValid() && !h.Public.Addr().Is4() {
		return nil, fmt.Errorf("publish: public address %v is not IPv4", h.Public)
	}
	if h.Public6.IsValid() && (!h.Public6.Addr().Is6() || h.Public6.Addr().Is4In6() || IsULA(h.Public6.Addr())) {
		return nil, fmt.Errorf("publish: public IPv6 address %v is not a global IPv6 address", h.Public6)
	}
	if !h.Public.IsValid() && !h.Public6.IsValid() {
		return nil, fmt.Errorf("publish: no public IPv4 or IPv6 endpoint")
	}
	if !h.ULA.Is6() || !IsULA(h.ULA) {
		return nil, fmt.Errorf("publish: ULA %v is not a unique local IPv6 address", h.ULA)
	}
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: h.TTL}
	}
	port := h.Public.Port()
	if !h.Public.IsValid() {
		port = h.Public6.Port()
	}
	txt := append(append([]string{txtVersion, "pk=" + h.Key}, h.Certs...), ciphers)
	if h.Public6.IsValid() && h.Public6.Port() != port {
		txt = append(txt, "port6="+strconv.Itoa(int(h.Public6.Port())))
	}
	recs := []dns.RR{&dns.SRV{Hdr: hdr(h.SRVName(), dns.TypeSRV), Port: port, Target: h.LabelName()}}
	if h.Public.IsValid() {
		recs = append(recs, &dns.A{Hdr: hdr(h.LabelName(), dns.TypeA), A: h.Public.Addr().AsSlice()})
	}
	recs = append(recs, &dns.AAAA{Hdr: hdr(h.LabelName(), dns.TypeAAAA), AAAA: h.ULA.AsSlice()})
	if h.Public6.IsValid() {
		recs = append(recs, &dns.AAAA{Hdr: hdr(h.LabelName(), dns.TypeAAAA), AAAA: h.Public6.Addr().AsSlice()})
	}
	return append(recs,
		&dns.TXT{Hdr: hdr(h.LabelName(), dns.TypeTXT), Txt: txt},
		&dns.AAAA{Hdr: hdr(h.HostName(), dns.TypeAAAA), AAAA: h.ULA.AsSlice()},
		&dns.PTR{Hdr: hdr(h.ListName(), dns.TypePTR), Ptr: h.HostName()},
	), nil
}

// IsULA reports whether a is a unique local IPv6 address (fc00::/7,
// RFC 4193): a tunnel address, never a path to a host.
func IsULA(a netip.Addr) bool { return a.Is6() && !a.Is4In6() && a.IsPrivate() }

// Endpoints returns where the host at label is reached, read from its
// records as Records writes them: the IPv4 endpoint (A, the SRV's port),
// the IPv6 one (the AAAA outside fc00::/7, port6= or the SRV's port) and
// the ULA (the AAAA inside fc00::/7). Records of other names are ignored.
func Endpoints(srvPort uint16, rrs []dns.RR) (v4, v6 netip.AddrPort, ula netip.Addr) {
	port6 := srvPort
	var a6 netip.Addr
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
				v4 = netip.AddrPortFrom(a, srvPort)
			}
		case *dns.AAAA:
			a, ok := netip.AddrFromSlice(rr.AAAA.To16())
			switch {
			case !ok || a.Is4In6():
			case IsULA(a):
				ula = a
			case a.IsGlobalUnicast():
				a6 = a
			}
		case *dns.TXT:
			for _, s := range rr.Txt {
				if v, ok := strings.CutPrefix(s, "port6="); ok {
					if n, err := strconv.ParseUint(v, 10, 16); err == nil && n != 0 {
						port6 = uint16(n)
					}
				}
			}
		}
	}
	if a6.IsValid() && port6 != 0 {
		v6 = netip.AddrPortFrom(a6, port6)
	}
	return v4, v6, ula
}

// Records returns the host's records (Records) followed by those of its
// services: for each, with ssh as the example,
//
//	_ssh._tcp.alice.ZONE.                PTR laptop._ssh._tcp.alice.ZONE.
//	laptop._ssh._tcp.alice.ZONE.         SRV 0 0 22 laptop.alice.ZONE.
//	laptop._ssh._tcp.alice.ZONE.         TXT "key=value" ... (or one "")
//	_services._dns-sd._udp.alice.ZONE.   PTR _ssh._tcp.alice.ZONE.
//
// The SRV's target is the host's name, whose AAAA is the ULA: a
// connection to the service goes through the tunnel.
func (h Host) AllRecords() ([]dns.RR, error) {
	recs, err := h.Records()
	if err != nil {
		return nil, err
	}
	return append(append(recs, h.ServiceRecords()...), h.Extra...), nil
}

// InstanceName is the name of the host's instance of a service type.
func (h Host) InstanceName(typ string) string {
	return dnssd.InstanceName(h.Name, typ, h.domain())
}

// ServiceRecords returns the records of the host's services (AllRecords).
func (h Host) ServiceRecords() []dns.RR {
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: h.TTL}
	}
	var recs []dns.RR
	for _, s := range h.Services {
		inst := h.InstanceName(s.Type)
		txt := []string{""} // RFC 6763 §6.1
		if len(s.TXT) > 0 {
			txt = nil
			for _, t := range s.TXT {
				txt = append(txt, dnssd.EscapeTXT(t))
			}
		}
		recs = append(recs,
			&dns.PTR{Hdr: hdr(dnssd.TypeName(s.Type, h.domain()), dns.TypePTR), Ptr: inst},
			&dns.SRV{Hdr: hdr(inst, dns.TypeSRV), Port: s.Port, Target: h.HostName()},
			&dns.TXT{Hdr: hdr(inst, dns.TypeTXT), Txt: txt},
			&dns.PTR{Hdr: hdr(dnssd.ServicesDomain(h.domain()), dns.TypePTR), Ptr: dnssd.TypeName(s.Type, h.domain())},
		)
	}
	return recs
}

// replace returns an UPDATE that makes the host's records exactly recs:
// it deletes what is at the host's own names (the SRV name, the label,
// the host name) and its entry in the host list, then adds recs. Without
// prerequisites, as RFC 9664 §5.1 asks, so that it also works as a
// registration after the server lost its state.
//
// prev, if not nil, is what was published before: the instances of the
// services it had and this one has not are deleted too.
func (h Host) replace(recs []dns.RR, prev *Host) *dns.Msg {
	m := new(dns.Msg).SetUpdate(dns.Fqdn(h.Zone))
	m.Ns = append(m.Ns, h.deletions()...)
	if prev != nil {
		m.Ns = append(m.Ns, prev.serviceDeletions(h.dropped(prev))...)
	}
	m.Insert(recs)
	return m
}

// dropped returns the service types prev published and h does not.
func (h Host) dropped(prev *Host) []string {
	var out []string
	for _, s := range prev.Services {
		if !slices.ContainsFunc(h.Services, func(n dnssd.Service) bool { return n.Type == s.Type }) {
			out = append(out, s.Type)
		}
	}
	return out
}

// serviceTypes returns the types of h's services.
func (h Host) serviceTypes() []string {
	var out []string
	for _, s := range h.Services {
		out = append(out, s.Type)
	}
	return out
}

// serviceDeletions deletes the host's instances of the given types:
// everything at the instance's name, which is the host's own, and only
// the host's own PTR in the type's list, which other hosts share.
func (h Host) serviceDeletions(types []string) []dns.RR {
	var out []dns.RR
	for _, t := range types {
		out = append(out,
			&dns.ANY{Hdr: dns.RR_Header{Name: h.InstanceName(t), Rrtype: dns.TypeANY, Class: dns.ClassANY}},
			&dns.PTR{Hdr: dns.RR_Header{Name: dnssd.TypeName(t, h.domain()), Rrtype: dns.TypePTR, Class: dns.ClassNONE}, Ptr: h.InstanceName(t)},
		)
	}
	return out
}

// unlistTypes returns, for each type, an UPDATE that takes the type out
// of the service-type enumeration (_services._dns-sd._udp) if no
// instance of it is left: its prerequisite is that the type's PTR RRset
// does not exist (RFC 2136 §2.4.3), so that a type another host still
// offers stays listed. The PTR there is shared by every host that offers
// the type: no host deletes it while an instance is listed.
func (h Host) unlistTypes(types []string) []*dns.Msg {
	var out []*dns.Msg
	for _, t := range types {
		m := new(dns.Msg).SetUpdate(dns.Fqdn(h.Zone))
		m.RRsetNotUsed([]dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: dnssd.TypeName(t, h.domain()), Rrtype: dns.TypePTR}}})
		m.Ns = append(m.Ns, &dns.PTR{Hdr: dns.RR_Header{Name: dnssd.ServicesDomain(h.domain()), Rrtype: dns.TypePTR, Class: dns.ClassNONE}, Ptr: dnssd.TypeName(t, h.domain())})
		out = append(out, m)
	}
	return out
}

// remove returns an UPDATE that deletes the host's records.
// (its services' too; unlistTypes then cleans the type enumeration).
func (h Host) remove() *dns.Msg {
	m := new(dns.Msg).SetUpdate(dns.Fqdn(h.Zone))
	m.Ns = append(m.Ns, h.deletions()...)
	m.Ns = append(m.Ns, h.serviceDeletions(h.serviceTypes())...)
	return m
}

func (h Host) deletions() []dns.RR {
	any := func(name string, t uint16) dns.RR {
		return &dns.ANY{Hdr: dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassANY}}
	}
	return []dns.RR{
		any(h.SRVName(), dns.TypeSRV),
		any(h.LabelName(), dns.TypeANY),
		any(h.HostName(), dns.TypeAAAA),
		// Only this host's entry in the list: class NONE deletes one RR.
		&dns.PTR{Hdr: dns.RR_Header{Name: h.ListName(), Rrtype: dns.TypePTR, Class: dns.ClassNONE}, Ptr: h.HostName()},
	}
}
