package boltstore

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// diff returns the records of new that old lacks and those of old that new
// lacks. Records are equal when their data and TTL are; a changed lease
// alone is not a change anyone can see.
func diff(old, new []store.Record) (added, removed []dns.RR) {
	for _, n := range new {
		if !containsRR(old, n.RR) {
			added = append(added, n.RR)
		}
	}
	for _, o := range old {
		if !containsRR(new, o.RR) {
			removed = append(removed, o.RR)
		}
	}
	return added, removed
}

func containsRR(recs []store.Record, rr dns.RR) bool {
	for _, r := range recs {
		if r.RR.Header().Ttl == rr.Header().Ttl && dns.IsDuplicate(r.RR, rr) {
			return true
		}
	}
	return false
}

func firstExpiry(recs []store.Record) (time.Time, bool) {
	var first time.Time
	for _, r := range recs {
		if !r.Expires.IsZero() && (first.IsZero() || r.Expires.Before(first)) {
			first = r.Expires
		}
	}
	return first, !first.IsZero()
}

func addUsage(u store.Usage, recs []store.Record, sign int) store.Usage {
	for _, r := range recs {
		u.Records += sign
		u.Bytes += sign * dns.Len(r.RR)
	}
	return u
}

// errCorrupt marks a value that this package cannot have written.
var errCorrupt = errors.New("store: corrupt record value")

// encodeRecords lays records out as, for each: the lease end (unix nanos,
// 0 for none, 8 octets), the RR's wire length (2 octets) and the RR in
// uncompressed wire form, owner name included so its case survives.
func encodeRecords(recs []store.Record) ([]byte, error) {
	size := 0
	for _, r := range recs {
		size += 10 + dns.Len(r.RR)
	}
	b := make([]byte, 0, size)
	for _, r := range recs {
		var exp uint64
		if !r.Expires.IsZero() {
			exp = uint64(r.Expires.UnixNano())
		}
		b = binary.BigEndian.AppendUint64(b, exp)
		at := len(b)
		b = append(b, 0, 0)
		b = append(b, make([]byte, dns.Len(r.RR))...)
		end, err := dns.PackRR(r.RR, b, at+2, nil, false)
		if err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint16(b[at:], uint16(end-at-2))
		b = b[:end]
	}
	return b, nil
}

func decodeRecords(b []byte) ([]store.Record, error) {
	var recs []store.Record
	for len(b) > 0 {
		if len(b) < 10 {
			return nil, errCorrupt
		}
		exp := binary.BigEndian.Uint64(b)
		n := int(binary.BigEndian.Uint16(b[8:]))
		if len(b) < 10+n {
			return nil, errCorrupt
		}
		rr, _, err := dns.UnpackRR(b[10:10+n], 0)
		if err != nil || rr == nil {
			return nil, errCorrupt
		}
		r := store.Record{RR: rr}
		if exp != 0 {
			r.Expires = time.Unix(0, int64(exp))
		}
		recs = append(recs, r)
		b = b[10+n:]
	}
	return recs, nil
}
