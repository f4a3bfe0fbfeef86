package boltstore

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// tx implements store.Tx on the zone in memory, under the Store's lock.
// Set writes through at once, so later reads in the same transaction see
// it, and remembers what it replaced: undo puts that back if the
// transaction fails, finish turns what changed into the event and the
// log record.
type tx struct {
	z       *memZone
	now     time.Time
	touched map[string]*touch // by name key
	order   []*touch
	seen    []seenID // ids this transaction remembered
}

// touch is one name this transaction set: its records before the
// transaction (expired ones included) and the last records set, packed,
// and the latter as given.
type touch struct {
	key, name            string
	oldPacked, newPacked []byte
	new                  []store.Record
}

func (t *tx) Now() time.Time { return t.now }

func (t *tx) Get(name string) ([]store.Record, error) {
	key, err := t.z.keyOf(name)
	if err != nil {
		return nil, err
	}
	all, err := decodeRecords(t.z.packed(key))
	if err != nil {
		return nil, err
	}
	live := all[:0]
	for _, r := range all {
		if r.Live(t.now) {
			live = append(live, r)
		}
	}
	return live, nil
}

func (t *tx) HasDescendants(name string) (bool, error) {
	key, err := t.z.keyOf(name)
	if err != nil {
		return false, err
	}
	return t.z.hasDescendants(key), nil
}

func (t *tx) Set(name string, recs []store.Record) error {
	key, err := t.z.keyOf(name)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if k, _ := store.Key(r.RR.Header().Name); string(k) != key {
			return fmt.Errorf("store: record %q set at name %q", r.RR.Header().Name, name)
		}
	}
	packed, err := encodeRecords(recs)
	if err != nil {
		return err
	}
	tc, ok := t.touched[key]
	if !ok {
		tc = &touch{key: key, name: store.Canonical(name), oldPacked: t.z.packed(key)}
		t.touched[key] = tc
		t.order = append(t.order, tc)
	}
	tc.new = append([]store.Record(nil), recs...)
	tc.newPacked = packed
	t.z.set(key, packed)
	return nil
}

// Remember implements store.Tx.
func (t *tx) Remember(id []byte, signed time.Time) (bool, error) {
	t.z.seen.forget(t.now.Add(-store.ReplayWindow).Unix())
	s := seenID{id: hashID(id, signed.Unix()), signed: signed.Unix()}
	if t.z.seen.has(s.id) {
		return false, nil
	}
	t.z.seen.add(s)
	t.seen = append(t.seen, s)
	return true, nil
}

func (t *tx) Usage(owner string) (store.Usage, error) {
	key, err := t.z.keyOf(owner)
	if err != nil {
		return store.Usage{}, err
	}
	return t.z.usage[t.z.ownerKey(key)], nil
}

// undo puts back what the transaction changed.
func (t *tx) undo() {
	for i := len(t.order) - 1; i >= 0; i-- {
		tc := t.order[i]
		t.z.set(tc.key, tc.oldPacked)
	}
	for _, s := range t.seen {
		t.z.seen.remove(s)
	}
}

// finish ends a transaction that succeeded as number seq: it moves the
// serial if anything visible changed, and returns the event and the log
// record (nil if the transaction changed nothing that needs keeping). On
// an error the transaction is not finished and must be undone.
func (t *tx) finish(seq uint64) (store.Event, []byte, error) {
	var ev store.Event
	for _, tc := range t.order {
		old, err := decodeRecords(tc.oldPacked)
		if err != nil {
			return store.Event{}, nil, err
		}
		added, removed := diff(old, tc.new)
		if len(added)+len(removed) > 0 {
			ev.Changes = append(ev.Changes, store.Change{Name: tc.name, Added: added, Removed: removed})
		}
	}
	ev.Serial = t.z.serial
	if len(ev.Changes) > 0 {
		ev.Serial++
		if ev.Serial == 0 { // RFC 1982 wrap; 0 confuses some secondaries
			ev.Serial = 1
		}
	}
	var rec []byte
	if len(t.order) > 0 || len(t.seen) > 0 {
		rec = encodeTx(seq, ev.Serial, t.order, t.seen)
	}
	t.z.serial = ev.Serial
	t.z.fresh = append(t.z.fresh, t.seen...)
	return ev, rec, nil
}

// encodeTx lays out one transaction's log record: its sequence number, the
// serial after it, the records now at each name it set, and the ids it
// remembered. Replaying it sets the same names to the same records.
//
//	seq u64 ‖ serial u32 ‖ names u32 ‖ (keylen u8 ‖ key ‖ len u32 ‖ records)…
//	‖ ids u32 ‖ (signed i64 ‖ id [16])…
func encodeTx(seq uint64, serial uint32, order []*touch, seen []seenID) []byte {
	b := binary.BigEndian.AppendUint64(nil, seq)
	b = binary.BigEndian.AppendUint32(b, serial)
	b = binary.BigEndian.AppendUint32(b, uint32(len(order)))
	for _, tc := range order {
		v := tc.newPacked
		b = append(b, byte(len(tc.key)))
		b = append(b, tc.key...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(seen)))
	for _, s := range seen {
		b = binary.BigEndian.AppendUint64(b, uint64(s.signed))
		b = append(b, s.id[:]...)
	}
	return b
}

// loggedTx is a decoded log record.
type loggedTx struct {
	seq    uint64
	serial uint32
	keys   []string
	packed [][]byte // checked to decode
	seen   []seenID
}

// decodeTx reads what encodeTx wrote; errCorrupt for anything else.
func decodeTx(b []byte) (loggedTx, error) {
	var l loggedTx
	if len(b) < 16 {
		return l, errCorrupt
	}
	l.seq = binary.BigEndian.Uint64(b)
	l.serial = binary.BigEndian.Uint32(b[8:])
	n := binary.BigEndian.Uint32(b[12:])
	b = b[16:]
	for range n {
		if len(b) < 1 || len(b) < 1+int(b[0])+4 {
			return l, errCorrupt
		}
		key := string(b[1 : 1+int(b[0])])
		b = b[1+len(key):]
		vlen := int(binary.BigEndian.Uint32(b))
		if len(b) < 4+vlen {
			return l, errCorrupt
		}
		v := b[4 : 4+vlen]
		if _, err := decodeRecords(v); err != nil {
			return l, err
		}
		if _, err := store.KeyName([]byte(key)); err != nil {
			return l, errCorrupt
		}
		l.keys = append(l.keys, key)
		l.packed = append(l.packed, v)
		b = b[4+vlen:]
	}
	if len(b) < 4 {
		return l, errCorrupt
	}
	n = binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(len(b)) != uint64(n)*(8+idLen) {
		return l, errCorrupt
	}
	for range n {
		var s seenID
		s.signed = int64(binary.BigEndian.Uint64(b))
		copy(s.id[:], b[8:8+idLen])
		l.seen = append(l.seen, s)
		b = b[8+idLen:]
	}
	return l, nil
}
