package memzone

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// Diff returns the records of new that old lacks and those of old that new
// lacks. Records are equal when their data and TTL are; a changed lease
// alone is not a change anyone can see.
func Diff(old, new []store.Record) (added, removed []dns.RR) {
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

// WalkPacked calls fn for each record of a packed value (EncodeRecords):
// its lease end (unix nanoseconds, 0 for none) and its wire form.
func WalkPacked(b []byte, fn func(expires int64, wire []byte) error) error {
	for len(b) > 0 {
		if len(b) < 10 {
			return ErrCorrupt
		}
		n := int(binary.BigEndian.Uint16(b[8:]))
		if len(b) < 10+n {
			return ErrCorrupt
		}
		if err := fn(int64(binary.BigEndian.Uint64(b)), b[10:10+n]); err != nil {
			return err
		}
		b = b[10+n:]
	}
	return nil
}

// FirstExpiry returns the earliest lease end in a packed value, 0 for none.
func FirstExpiry(packed []byte) int64 {
	var first int64
	WalkPacked(packed, func(expires int64, _ []byte) error {
		if expires != 0 && (first == 0 || expires < first) {
			first = expires
		}
		return nil
	})
	return first
}

// AddUsage adds (sign 1) or takes away (sign -1) the records of a packed
// value: how many, and their wire length.
func AddUsage(u store.Usage, packed []byte, sign int) store.Usage {
	WalkPacked(packed, func(_ int64, wire []byte) error {
		u.Records += sign
		u.Bytes += sign * len(wire)
		return nil
	})
	return u
}

// ErrCorrupt marks a value that this package cannot have written.
var ErrCorrupt = errors.New("store: corrupt record value")

// EncodeRecords lays records out as, for each: the lease end (unix nanos,
// 0 for none, 8 octets), the RR's wire length (2 octets) and the RR in
// uncompressed wire form, owner name included so its case survives.
func EncodeRecords(recs []store.Record) ([]byte, error) {
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

// DecodeRecords reads what EncodeRecords wrote; ErrCorrupt for anything
// else.
func DecodeRecords(b []byte) ([]store.Record, error) {
	var recs []store.Record
	err := WalkPacked(b, func(expires int64, wire []byte) error {
		rr, _, err := dns.UnpackRR(wire, 0)
		if err != nil || rr == nil {
			return ErrCorrupt
		}
		r := store.Record{RR: rr}
		if expires != 0 {
			r.Expires = time.Unix(0, expires)
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}
