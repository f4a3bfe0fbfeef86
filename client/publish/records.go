// Package publish keeps a host's records in its owner's domain (RFC 6281
// §5.2): one TSIG-signed UPDATE with an UPDATE-LEASE option (RFC 9664)
// that replaces them, refreshed before the lease ends, sent again at once
// after any change, and a last one that removes them on a clean exit.
package publish

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// Host is what a host publishes about itself.
type Host struct {
	Zone   string // members.example.com.
	User   string // alice
	Name   string // laptop
	Label  string // AutoTunnel-02-11-22-FF-FE-33-44-55
	ULA    netip.Addr
	Public netip.AddrPort // the NAT's external address and mapped port, or the host's own
	Key    string         // the static X25519 public key, base64
	TTL    uint32         // of every record; short, since hosts move
}

// The TXT record's version and the ciphers the tunnel offers.
const (
	txtVersion = "txtvers=1"
	ciphers    = "ciphers=aes256gcm,chacha20poly1305"
)

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
//	AutoTunnel-….alice.ZONE.           TXT  "txtvers=1" "pk=KEY" "ciphers=…"
//	laptop.alice.ZONE.                 AAAA ULA
//	_autotunnel._udp.alice.ZONE.       PTR  laptop.alice.ZONE.
func (h Host) Records() ([]dns.RR, error) {
	if !h.Public.Addr().Is4() {
		return nil, fmt.Errorf("publish: public address %v is not IPv4", h.Public)
	}
	if !h.ULA.Is6() {
		return nil, fmt.Errorf("publish: ULA %v is not IPv6", h.ULA)
	}
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: h.TTL}
	}
	return []dns.RR{
		&dns.SRV{Hdr: hdr(h.SRVName(), dns.TypeSRV), Port: h.Public.Port(), Target: h.LabelName()},
		&dns.A{Hdr: hdr(h.LabelName(), dns.TypeA), A: h.Public.Addr().AsSlice()},
		&dns.AAAA{Hdr: hdr(h.LabelName(), dns.TypeAAAA), AAAA: h.ULA.AsSlice()},
		&dns.TXT{Hdr: hdr(h.LabelName(), dns.TypeTXT), Txt: []string{txtVersion, "pk=" + h.Key, ciphers}},
		&dns.AAAA{Hdr: hdr(h.HostName(), dns.TypeAAAA), AAAA: h.ULA.AsSlice()},
		&dns.PTR{Hdr: hdr(h.ListName(), dns.TypePTR), Ptr: h.HostName()},
	}, nil
}

// replace returns an UPDATE that makes the host's records exactly recs:
// it deletes what is at the host's own names (the SRV name, the label,
// the host name) and its entry in the host list, then adds recs. Without
// prerequisites, as RFC 9664 §5.1 asks, so that it also works as a
// registration after the server lost its state.
func (h Host) replace(recs []dns.RR) *dns.Msg {
	m := new(dns.Msg).SetUpdate(dns.Fqdn(h.Zone))
	m.Ns = append(m.Ns, h.deletions()...)
	m.Insert(recs)
	return m
}

// remove returns an UPDATE that deletes the host's records.
func (h Host) remove() *dns.Msg {
	m := new(dns.Msg).SetUpdate(dns.Fqdn(h.Zone))
	m.Ns = append(m.Ns, h.deletions()...)
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
