// Package btmm implements the btmm plugin: it owns a members zone, its
// store and its users' keys, and answers ordinary queries for it.
package btmm

import (
	"context"
	"net"
	"slices"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/members"
	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// SOA timers. The zone changes whenever a host moves, so negative answers
// are cached briefly; secondaries are not expected (LLQ clients hear of
// changes directly), the refresh values are only sane defaults.
const (
	soaTTL     = 60
	soaRefresh = 3600
	soaRetry   = 600
	soaExpire  = 86400
	soaMinimum = 30
	// maxChase bounds how many in-zone CNAMEs one answer follows.
	maxChase = 8
)

// Btmm is the btmm plugin's handler.
type Btmm struct {
	Next plugin.Handler

	zone      string
	storePath string                 // the file store, unless etcd is set
	etcd      *etcdPlace             // the zone on etcd instead
	keys      map[string]keyfile.Key // the key file's, by lowercase name
	ns        []nameServer
	adminPath string      // the admin socket; "" for none
	store     store.Store // set in OnStartup, before any query arrives
	now       func() time.Time
}

// The plugins beside btmm find it, through package members, as a Zone.
var _ members.Zone = (*Btmm)(nil)

type nameServer struct {
	name  string
	addrs []net.IP
}

// Name implements plugin.Handler.
func (b *Btmm) Name() string { return pluginName }

// Zone returns the apex of the zone, lowercase and fully qualified.
func (b *Btmm) Zone() string { return b.zone }

// Store returns the zone's store. Sibling plugins call it per request: it is
// set when the server starts, after their setup ran.
func (b *Btmm) Store() store.Store { return b.store }

// Keys returns the keys the user named name may sign with: the key
// file's, or the store's (the new and the previous key while one is being
// rotated); none for a name that is no user's.
func (b *Btmm) Keys(name string) []keyfile.Key {
	name = dns.CanonicalName(name)
	if k, ok := b.keys[name]; ok {
		return []keyfile.Key{k}
	}
	if b.store == nil {
		return nil // not started: only the key file's users exist
	}
	u, ok, err := b.store.User(name)
	if err != nil {
		log.Errorf("reading user %s: %v", name, err)
		return nil
	}
	if !ok {
		return nil
	}
	return u.Keys(b.now())
}

// isUser reports whether name (lowercase, fully qualified) is a user's
// domain, in the key file or in the store. The store's users are one label
// below the zone (the admin socket adds no others), so only such a name
// costs a store lookup: the query path reads the store's users for names
// at a user's domain, not for every name below it.
func (b *Btmm) isUser(name string) bool {
	if _, ok := b.keys[name]; ok {
		return true
	}
	if b.store == nil || len(name) <= len(b.zone) || store.Owner(b.zone, name) != name {
		return false
	}
	_, ok, err := b.store.User(name)
	if err != nil {
		log.Errorf("reading user %s: %v", name, err)
	}
	return ok
}

// ServeDNS implements plugin.Handler.
func (b *Btmm) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	state := request.Request{W: w, Req: r}
	qname := state.Name()
	if !dns.IsSubDomain(b.zone, qname) {
		return plugin.NextOrFailure(b.Name(), b.Next, ctx, w, r)
	}
	if r.Opcode != dns.OpcodeQuery {
		// An UPDATE gets here only if tsig-update is not configured.
		return dns.RcodeNotImplemented, nil
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	rcode, err := b.Answer(m, qname, state.QType())
	if err != nil {
		return dns.RcodeServerFailure, plugin.Error(b.Name(), err)
	}
	m.Rcode = rcode
	w.WriteMsg(m)
	return dns.RcodeSuccess, nil
}

// Answer fills m's answer, authority and additional sections for qname and
// qtype, which must be in the zone, and returns the RCODE.
func (b *Btmm) Answer(m *dns.Msg, qname string, qtype uint16) (int, error) {
	for range maxChase {
		rrs, exists, err := b.records(qname)
		if err != nil {
			return dns.RcodeServerFailure, err
		}
		if !exists {
			m.Ns = append(m.Ns, b.negativeSOA(qname))
			return dns.RcodeNameError, nil
		}
		var answer []dns.RR
		var cname *dns.CNAME
		for _, rr := range rrs {
			t := rr.Header().Rrtype
			switch {
			case t == qtype || qtype == dns.TypeANY:
				answer = append(answer, rr)
			case t == dns.TypeCNAME:
				cname = rr.(*dns.CNAME)
			}
		}
		if len(answer) == 0 && cname != nil {
			m.Answer = append(m.Answer, cname)
			if !dns.IsSubDomain(b.zone, cname.Target) {
				return dns.RcodeSuccess, nil
			}
			qname = dns.CanonicalName(cname.Target)
			continue
		}
		if len(answer) == 0 {
			m.Ns = append(m.Ns, b.negativeSOA(qname))
			return dns.RcodeSuccess, nil
		}
		m.Answer = append(m.Answer, answer...)
		return dns.RcodeSuccess, b.additional(m, answer)
	}
	return dns.RcodeServerFailure, nil // a CNAME loop in the zone
}

// records returns the records at name: the stored ones, and at the apex,
// at each user's domain and at the in-zone name servers the ones this
// plugin makes from its config.
func (b *Btmm) records(name string) ([]dns.RR, bool, error) {
	rrs, exists, err := b.store.Lookup(name)
	if err != nil {
		return nil, false, err
	}
	if name == b.zone || b.isUser(name) {
		// Each user's domain is a zone of its own to clients: it has an
		// SOA and the apex's name servers, so that a client finding the
		// zone of a name by SOA queries (as Apple's and BIND's do) stops
		// at the user's domain and signs for it with the user's key.
		exists = true
		rrs = append(rrs, b.soa(name))
		for _, ns := range b.ns {
			rrs = append(rrs, &dns.NS{Hdr: b.hdr(name, dns.TypeNS), Ns: ns.name})
		}
	}
	if user, ok := b.enumeration(name); ok {
		// DNS-SD domain enumeration (RFC 6763 §11): browsing and
		// registering in a user's domain is done in that domain.
		exists = true
		rrs = append(rrs, &dns.PTR{Hdr: b.hdr(name, dns.TypePTR), Ptr: user})
	}
	for _, ns := range b.ns {
		if ns.name != name {
			continue
		}
		exists = true
		for _, ip := range ns.addrs {
			rrs = append(rrs, addressRR(b.hdr(name, 0), ip))
		}
	}
	return rrs, exists, nil
}

// enumerationLabels are the first labels of RFC 6763 §11's domain
// enumeration names: browse, default browse, registration, default
// registration and legacy browse domains.
var enumerationLabels = []string{"b", "db", "r", "dr", "lb"}

// enumeration reports whether name is a domain-enumeration name at a
// user's domain (db._dns-sd._udp.alice.ZONE), and returns that domain.
func (b *Btmm) enumeration(name string) (string, bool) {
	labels := dns.SplitDomainName(name)
	if len(labels) < 4 || labels[1] != "_dns-sd" || labels[2] != "_udp" || !slices.Contains(enumerationLabels, labels[0]) {
		return "", false
	}
	i := dns.Split(name)
	user := name[i[3]:]
	if !b.isUser(user) {
		return "", false
	}
	return user, true
}

// additional adds the in-zone addresses of the targets of SRV and NS
// answers, which clients would otherwise ask for next.
func (b *Btmm) additional(m *dns.Msg, answer []dns.RR) error {
	for _, rr := range answer {
		var target string
		switch rr := rr.(type) {
		case *dns.SRV:
			target = rr.Target
		case *dns.NS:
			target = rr.Ns
		default:
			continue
		}
		target = dns.CanonicalName(target)
		if !dns.IsSubDomain(b.zone, target) {
			continue
		}
		rrs, _, err := b.records(target)
		if err != nil {
			return err
		}
		for _, a := range rrs {
			if t := a.Header().Rrtype; t == dns.TypeA || t == dns.TypeAAAA {
				m.Extra = append(m.Extra, a)
			}
		}
	}
	return nil
}

// UserZone returns the user's domain that name (lowercase, fully
// qualified) is at or under: the name of a user's key.
func (b *Btmm) UserZone(name string) (string, bool) {
	if !dns.IsSubDomain(b.zone, name) {
		return "", false
	}
	for off, end := 0, false; !end && len(name)-off > len(b.zone); off, end = dns.NextLabel(name, off) {
		if b.isUser(name[off:]) {
			return name[off:], true
		}
	}
	return "", false
}

// soa returns the SOA of the zone at owner, the apex or a user's domain.
// All share the store's serial, which changes with every change in the
// zone, and so with every change in each user's domain.
func (b *Btmm) soa(owner string) *dns.SOA {
	serial, _ := b.store.Serial()
	mname := b.zone
	if len(b.ns) > 0 {
		mname = b.ns[0].name
	}
	return &dns.SOA{
		Hdr: b.hdr(owner, dns.TypeSOA), Ns: mname, Mbox: "hostmaster." + b.zone,
		Serial: serial, Refresh: soaRefresh, Retry: soaRetry, Expire: soaExpire, Minttl: soaMinimum,
	}
}

// negativeSOA is the SOA for the authority section of a negative answer
// for qname: that of the user's domain qname is in, else the apex's, its
// TTL lowered to the negative caching time (RFC 2308 §3).
func (b *Btmm) negativeSOA(qname string) *dns.SOA {
	owner, ok := b.UserZone(qname)
	if !ok {
		owner = b.zone
	}
	soa := b.soa(owner)
	soa.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	return soa
}

func (b *Btmm) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: soaTTL}
}

func addressRR(h dns.RR_Header, ip net.IP) dns.RR {
	if ip4 := ip.To4(); ip4 != nil {
		h.Rrtype = dns.TypeA
		return &dns.A{Hdr: h, A: ip4}
	}
	h.Rrtype = dns.TypeAAAA
	return &dns.AAAA{Hdr: h, AAAA: ip}
}
