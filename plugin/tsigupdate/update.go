package tsigupdate

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
)

// rcodeNoReply is what update returns for an UPDATE to drop unanswered.
const rcodeNoReply = -1

// rcodeError aborts an UPDATE's transaction with the RCODE to answer.
type rcodeError int

func (e rcodeError) Error() string { return dns.RcodeToString[int(e)] }

// update applies the UPDATE r, signed with key (lowercase) and sig, to st
// in one transaction, following RFC 2136 §3, and returns the RCODE to
// answer. A non-nil error is a fault of the server (SERVFAIL), to be
// logged.
//
// Replays: the signature's identity is remembered in the store with the
// records, in the same transaction, so an UPDATE that was taken before,
// even by the process before a crash, is refused: update returns
// dns.RcodeBadTime for it and changes nothing. One that failed a
// prerequisite or the quota is remembered in a transaction of its own, so
// that it cannot be sent again once the zone has changed. (One refused
// before the transaction, for its form or its scope, would be refused
// again whatever the zone holds.) sig may be nil in tests.
func (u *TsigUpdate) update(st store.Store, key string, r *dns.Msg, lease updatelease.Grant, sig *dns.TSIG) (int, error) {
	// §3.1: the zone section names the zone, once, as an SOA question: the
	// members zone, or the user's own domain, which clients that find the
	// zone by SOA queries name (each user's domain answers its own SOA).
	if len(r.Question) != 1 || r.Question[0].Qtype != dns.TypeSOA {
		return dns.RcodeFormatError, nil
	}
	zclass := r.Question[0].Qclass
	zone := dns.CanonicalName(r.Question[0].Name)
	if zclass != dns.ClassINET {
		return dns.RcodeNotAuth, nil
	}
	if zone != st.Zone() {
		// Only the signing key's own domain: another user's zone, or a
		// name that is no zone here, is not ours to update with this key.
		if user, ok := u.zone.UserZone(zone); !ok || user != zone || zone != key {
			return dns.RcodeNotAuth, nil
		}
	}
	if rcode := prescan(zone, zclass, r.Answer, r.Ns); rcode != dns.RcodeSuccess {
		return rcode, nil
	}
	for _, rr := range r.Ns {
		if rr.Header().Class == zclass && operatorOnly(rr.Header().Rrtype) {
			log.Debugf("key %s may not add %s records", key, dns.TypeToString[rr.Header().Rrtype])
			return dns.RcodeRefused, nil
		}
	}
	// §3.3, done before the prerequisites so that a key cannot probe
	// other users' names with them: everything must be in the key's own
	// subtree.
	for _, sec := range [][]dns.RR{r.Answer, r.Ns} {
		for _, rr := range sec {
			if !dns.IsSubDomain(key, rr.Header().Name) {
				log.Debugf("key %s may not change %s", key, rr.Header().Name)
				return dns.RcodeRefused, nil
			}
		}
	}

	// A key over its rate is refused before its UPDATE costs the store
	// anything (the client tries again after a back-off), and mostly not
	// even answered (see keyrate.Limiter.Allow).
	if ok, answer := u.rates.Allow(key); !ok {
		rateLimited.Inc()
		log.Debugf("key %s over its rate of UPDATEs, refused", key)
		if !answer {
			return rcodeNoReply, nil
		}
		return dns.RcodeRefused, nil
	}

	id, signed := signature(sig)
	remember := func(tx store.Tx) error {
		if id == nil {
			return nil
		}
		fresh, err := tx.Remember(id, signed)
		if err == nil && !fresh {
			log.Debugf("UPDATE with key %s: a replay (time signed %d), refused", key, sig.TimeSigned)
			return rcodeError(dns.RcodeBadTime)
		}
		return err
	}
	_, err := st.Update(func(tx store.Tx) error {
		if err := remember(tx); err != nil {
			return err
		}
		if rcode, err := checkPrerequisites(tx, zclass, r.Answer); err != nil || rcode != dns.RcodeSuccess {
			if err != nil {
				return err
			}
			return rcodeError(rcode)
		}
		owner := store.Owner(st.Zone(), key)
		before, err := tx.Usage(owner)
		if err != nil {
			return err
		}
		w := &working{tx: tx, zone: zone, names: make(map[string]*[]store.Record)}
		for _, rr := range r.Ns {
			if err := w.apply(rr, zclass, lease); err != nil {
				return err
			}
		}
		if err := w.commit(); err != nil {
			return err
		}
		after, err := tx.Usage(owner)
		if err != nil {
			return err
		}
		grew := after.Records > before.Records || after.Bytes > before.Bytes
		if grew && (after.Records > u.maxRecords || after.Bytes > u.maxBytes) {
			log.Debugf("key %s over quota: %d records, %d bytes", key, after.Records, after.Bytes)
			return rcodeError(dns.RcodeRefused)
		}
		return nil
	})
	var rc rcodeError
	switch {
	case errors.As(err, &rc):
		if rc != dns.RcodeBadTime && id != nil {
			if _, err := st.Update(remember); err != nil && !errors.As(err, new(rcodeError)) {
				return dns.RcodeServerFailure, err
			}
		}
		return int(rc), nil
	case err != nil:
		return dns.RcodeServerFailure, err
	}
	return dns.RcodeSuccess, nil
}

// signature returns the identity of a signed message (its key's name and
// its MAC) and its time signed; nil for none.
func signature(sig *dns.TSIG) ([]byte, time.Time) {
	if sig == nil {
		return nil, time.Time{}
	}
	mac, err := hex.DecodeString(sig.MAC)
	if err != nil {
		return nil, time.Time{}
	}
	id := append([]byte(dns.CanonicalName(sig.Hdr.Name)), 0)
	return append(id, mac...), time.Unix(int64(sig.TimeSigned), 0)
}

// prescan checks the form of the prerequisite (§2.4, §3.2) and update
// (§3.4.1) sections before anything is read or written.
func prescan(zone string, zclass uint16, prereqs, updates []dns.RR) int {
	for _, rr := range prereqs {
		h := rr.Header()
		if !dns.IsSubDomain(zone, h.Name) {
			return dns.RcodeNotZone
		}
		if h.Ttl != 0 {
			return dns.RcodeFormatError
		}
		switch h.Class {
		case dns.ClassANY, dns.ClassNONE:
			if h.Rdlength != 0 {
				return dns.RcodeFormatError
			}
		case zclass:
			if isMeta(h.Rrtype) {
				return dns.RcodeFormatError
			}
		default:
			return dns.RcodeFormatError
		}
	}
	for _, rr := range updates {
		h := rr.Header()
		if !dns.IsSubDomain(zone, h.Name) {
			return dns.RcodeNotZone
		}
		switch h.Class {
		case zclass:
			if isMeta(h.Rrtype) {
				return dns.RcodeFormatError
			}
		case dns.ClassANY:
			if h.Ttl != 0 || h.Rdlength != 0 || isMeta(h.Rrtype) && h.Rrtype != dns.TypeANY {
				return dns.RcodeFormatError
			}
		case dns.ClassNONE:
			if h.Ttl != 0 || isMeta(h.Rrtype) {
				return dns.RcodeFormatError
			}
		default:
			return dns.RcodeFormatError
		}
	}
	return dns.RcodeSuccess
}

// isMeta reports the types that are no data of their own (RFC 6895 §3.1),
// which no zone can hold.
func isMeta(t uint16) bool {
	switch t {
	case dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB,
		dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeNone:
		return true
	}
	return false
}

// operatorOnly reports the types that only the zone's operator may have in
// the zone: an SOA or NS inside a user's subtree would claim a zone cut
// that this server does not make, and DNSSEC records would claim
// signatures it does not keep.
func operatorOnly(t uint16) bool {
	switch t {
	case dns.TypeSOA, dns.TypeNS, dns.TypeDS, dns.TypeDNSKEY, dns.TypeRRSIG,
		dns.TypeNSEC, dns.TypeNSEC3, dns.TypeNSEC3PARAM, dns.TypeCDS, dns.TypeCDNSKEY:
		return true
	}
	return false
}

// checkPrerequisites evaluates §3.2.5's table against the store.
func checkPrerequisites(tx store.Tx, zclass uint16, prereqs []dns.RR) (int, error) {
	// RRset-equality prerequisites (class = zone) are gathered by name and
	// type first, then each set is compared as a whole.
	type rrset struct {
		name string
		t    uint16
	}
	var order []rrset
	want := make(map[rrset][]dns.RR)
	for _, rr := range prereqs {
		h := rr.Header()
		name := dns.CanonicalName(h.Name)
		recs, err := tx.Get(name)
		if err != nil {
			return 0, err
		}
		has := func(t uint16) bool {
			for _, r := range recs {
				if t == dns.TypeANY || r.RR.Header().Rrtype == t {
					return true
				}
			}
			return false
		}
		switch h.Class {
		case dns.ClassANY:
			if !has(h.Rrtype) {
				if h.Rrtype == dns.TypeANY {
					return dns.RcodeNameError, nil
				}
				return dns.RcodeNXRrset, nil
			}
		case dns.ClassNONE:
			if has(h.Rrtype) {
				if h.Rrtype == dns.TypeANY {
					return dns.RcodeYXDomain, nil
				}
				return dns.RcodeYXRrset, nil
			}
		case zclass:
			k := rrset{name, h.Rrtype}
			if _, ok := want[k]; !ok {
				order = append(order, k)
			}
			want[k] = append(want[k], rr)
		}
	}
	for _, k := range order {
		recs, err := tx.Get(k.name)
		if err != nil {
			return 0, err
		}
		var have []dns.RR
		for _, r := range recs {
			if r.RR.Header().Rrtype == k.t {
				have = append(have, r.RR)
			}
		}
		if !sameSet(have, want[k]) {
			return dns.RcodeNXRrset, nil
		}
	}
	return dns.RcodeSuccess, nil
}

// sameSet compares two RRsets by data, TTL and duplicates aside.
func sameSet(a, b []dns.RR) bool {
	in := func(x dns.RR, set []dns.RR) bool {
		for _, y := range set {
			if dns.IsDuplicate(x, y) {
				return true
			}
		}
		return false
	}
	for _, x := range a {
		if !in(x, b) {
			return false
		}
	}
	for _, y := range b {
		if !in(y, a) {
			return false
		}
	}
	return true
}

// working holds the names an UPDATE changes, read once from the store,
// changed in memory in the order of the update section and written back by
// commit.
type working struct {
	tx    store.Tx
	zone  string
	order []string
	names map[string]*[]store.Record
}

func (w *working) get(name string) (*[]store.Record, error) {
	if recs, ok := w.names[name]; ok {
		return recs, nil
	}
	recs, err := w.tx.Get(name)
	if err != nil {
		return nil, err
	}
	w.names[name] = &recs
	w.order = append(w.order, name)
	return &recs, nil
}

// apply carries out one RR of the update section (§3.4.2).
func (w *working) apply(rr dns.RR, zclass uint16, lease updatelease.Grant) error {
	h := rr.Header()
	name := dns.CanonicalName(h.Name)
	// The SOA and NS of the zone named (the members zone or the user's
	// domain) come from the server's configuration.
	if name == w.zone && (h.Rrtype == dns.TypeSOA || h.Rrtype == dns.TypeNS) {
		return nil
	}
	recs, err := w.get(name)
	if err != nil {
		return err
	}
	switch h.Class {
	case zclass:
		rec := store.Record{RR: dns.Copy(rr)}
		d := lease.Records
		if h.Rrtype == dns.TypeKEY {
			d = lease.Keys
		}
		if d > 0 {
			rec.Expires = w.tx.Now().Add(d)
		}
		*recs = add(*recs, rec)
	case dns.ClassANY:
		*recs = remove(*recs, func(r dns.RR) bool { return h.Rrtype == dns.TypeANY || r.Header().Rrtype == h.Rrtype })
	case dns.ClassNONE:
		// The RR comes in class NONE and the stored ones are in the zone's
		// class, which dns.IsDuplicate compares too.
		del := dns.Copy(rr)
		del.Header().Class = zclass
		*recs = remove(*recs, func(r dns.RR) bool { return dns.IsDuplicate(r, del) })
	default:
		return fmt.Errorf("class %d passed the prescan", h.Class)
	}
	return nil
}

// add puts rec into recs by §3.4.2.2's rules: a CNAME and other data never
// share a name (the add that would make them is ignored), and a record
// with the same data replaces the old one, renewing its TTL and lease.
func add(recs []store.Record, rec store.Record) []store.Record {
	t := rec.RR.Header().Rrtype
	for i, r := range recs {
		rt := r.RR.Header().Rrtype
		if t == dns.TypeCNAME && rt != dns.TypeCNAME || t != dns.TypeCNAME && rt == dns.TypeCNAME {
			return recs
		}
		if t == dns.TypeCNAME && rt == dns.TypeCNAME || dns.IsDuplicate(r.RR, rec.RR) {
			recs[i] = rec
			return recs
		}
	}
	return append(recs, rec)
}

func remove(recs []store.Record, match func(dns.RR) bool) []store.Record {
	out := recs[:0]
	for _, r := range recs {
		if !match(r.RR) {
			out = append(out, r)
		}
	}
	return out
}

func (w *working) commit() error {
	for _, name := range w.order {
		if err := w.tx.Set(name, *w.names[name]); err != nil {
			return err
		}
	}
	return nil
}
