package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/miekg/dns"
	bolt "go.etcd.io/bbolt"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// tx implements store.Tx over one bbolt write transaction. Set writes
// through at once, so later Gets in the same transaction see it; finish
// then turns what changed into the event, the lease index, the usage
// counters and the serial.
type tx struct {
	s       *Store
	btx     *bolt.Tx
	now     time.Time
	touched map[string]*touch // by string(name key)
	order   []*touch
}

// touch is one name this transaction set: its records before the
// transaction (expired ones included) and the last records set.
type touch struct {
	name     string
	key      []byte
	owner    string
	old, new []store.Record
}

func (t *tx) Now() time.Time { return t.now }

func (t *tx) Get(name string) ([]store.Record, error) {
	all, err := t.all(name)
	if err != nil {
		return nil, err
	}
	live := all[:0:0]
	for _, r := range all {
		if r.Live(t.now) {
			live = append(live, r)
		}
	}
	return live, nil
}

// all returns every record at name, expired ones included.
func (t *tx) all(name string) ([]store.Record, error) {
	key, err := t.s.keyInZone(name)
	if err != nil {
		return nil, err
	}
	return decodeRecords(t.btx.Bucket(bucketNames).Get(key))
}

func (t *tx) HasDescendants(name string) (bool, error) {
	key, err := t.s.keyInZone(name)
	if err != nil {
		return false, err
	}
	return hasDescendants(t.btx.Bucket(bucketNames), key), nil
}

func (t *tx) Set(name string, recs []store.Record) error {
	key, err := t.s.keyInZone(name)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if k, _ := store.Key(r.RR.Header().Name); !bytes.Equal(k, key) {
			return fmt.Errorf("store: record %q set at name %q", r.RR.Header().Name, name)
		}
	}
	tc, ok := t.touched[string(key)]
	if !ok {
		old, err := decodeRecords(t.btx.Bucket(bucketNames).Get(key))
		if err != nil {
			return err
		}
		cname := store.Canonical(name)
		tc = &touch{name: cname, key: key, owner: store.Owner(t.s.zone, cname), old: old}
		t.touched[string(key)] = tc
		t.order = append(t.order, tc)
	}
	tc.new = append([]store.Record(nil), recs...)
	names := t.btx.Bucket(bucketNames)
	if len(recs) == 0 {
		return names.Delete(key)
	}
	v, err := encodeRecords(recs)
	if err != nil {
		return err
	}
	return names.Put(key, v)
}

// Remember implements store.Tx. Ids are keyed by their time signed, so
// the ones past store.ReplayWindow are a prefix of the bucket, dropped
// here as they age.
func (t *tx) Remember(id []byte, signed time.Time) (bool, error) {
	b := t.btx.Bucket(bucketSigned)
	cutoff := t.now.Add(-store.ReplayWindow).Unix()
	c := b.Cursor()
	for k, _ := c.First(); len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) < cutoff; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return false, err
		}
	}
	key := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(id)), uint64(signed.Unix()))
	key = append(key, id...)
	if b.Get(key) != nil {
		return false, nil
	}
	return true, b.Put(key, []byte{1})
}

func (t *tx) Usage(owner string) (store.Usage, error) {
	key, err := t.s.keyInZone(owner)
	if err != nil {
		return store.Usage{}, err
	}
	u := decodeUsage(t.btx.Bucket(bucketUsage).Get(key))
	owner = store.Canonical(owner)
	for _, tc := range t.order {
		if tc.owner == owner {
			u = addUsage(u, tc.new, 1)
			u = addUsage(u, tc.old, -1)
		}
	}
	return u, nil
}

// finish records the transaction's effects beside the records: the lease
// index, usage counters and, if anything visible changed, a new serial.
func (t *tx) finish() (store.Event, error) {
	var ev store.Event
	usage := make(map[string]store.Usage)
	expiry := t.btx.Bucket(bucketExpiry)
	for _, tc := range t.order {
		added, removed := diff(tc.old, tc.new)
		if len(added)+len(removed) > 0 {
			ev.Changes = append(ev.Changes, store.Change{Name: tc.name, Added: added, Removed: removed})
		}
		if old, ok := firstExpiry(tc.old); ok {
			if err := expiry.Delete(expiryKey(old, tc.key)); err != nil {
				return ev, err
			}
		}
		if next, ok := firstExpiry(tc.new); ok {
			if err := expiry.Put(expiryKey(next, tc.key), nil); err != nil {
				return ev, err
			}
		}
		u, ok := usage[tc.owner]
		if !ok {
			okey, _ := store.Key(tc.owner)
			u = decodeUsage(t.btx.Bucket(bucketUsage).Get(okey))
		}
		u = addUsage(u, tc.new, 1)
		usage[tc.owner] = addUsage(u, tc.old, -1)
	}
	for owner, u := range usage {
		okey, _ := store.Key(owner)
		var err error
		if u.Records <= 0 {
			err = t.btx.Bucket(bucketUsage).Delete(okey)
		} else {
			err = t.btx.Bucket(bucketUsage).Put(okey, encodeUsage(u))
		}
		if err != nil {
			return ev, err
		}
	}
	meta := t.btx.Bucket(bucketMeta)
	ev.Serial = binary.BigEndian.Uint32(meta.Get(metaSerial))
	if len(ev.Changes) > 0 {
		ev.Serial++
		if ev.Serial == 0 { // RFC 1982 wrap; 0 confuses some secondaries
			ev.Serial = 1
		}
		if err := meta.Put(metaSerial, binary.BigEndian.AppendUint32(nil, ev.Serial)); err != nil {
			return ev, err
		}
	}
	return ev, nil
}

// keyInZone returns name's key, refusing names outside the store's zone.
func (s *Store) keyInZone(name string) ([]byte, error) {
	key, err := store.Key(name)
	if err != nil {
		return nil, fmt.Errorf("store: name %q: %w", name, err)
	}
	if !bytes.HasPrefix(key, s.key) {
		return nil, fmt.Errorf("store: name %q is outside zone %q", name, s.zone)
	}
	return key, nil
}

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

func expiryKey(at time.Time, nameKey []byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(nameKey)), uint64(at.UnixNano()))
	return append(k, nameKey...)
}

func addUsage(u store.Usage, recs []store.Record, sign int) store.Usage {
	for _, r := range recs {
		u.Records += sign
		u.Bytes += sign * dns.Len(r.RR)
	}
	return u
}

func encodeUsage(u store.Usage) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(u.Records))
	return binary.BigEndian.AppendUint64(b, uint64(u.Bytes))
}

func decodeUsage(b []byte) store.Usage {
	if len(b) != 16 {
		return store.Usage{}
	}
	return store.Usage{Records: int(binary.BigEndian.Uint64(b)), Bytes: int(binary.BigEndian.Uint64(b[8:]))}
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
