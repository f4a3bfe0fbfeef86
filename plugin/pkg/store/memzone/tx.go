package memzone

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// Tx implements store.Tx on the zone in memory, under the lock of the
// engine that owns the Zone. Set writes through at once, so later reads
// in the same transaction see it, and remembers what it replaced: Undo
// puts that back if the transaction fails, Finish turns what changed into
// the event. The engine makes its own record of the transaction (a log
// record, an etcd transaction) from Touched and Remembered.
type Tx struct {
	z       *Zone
	now     time.Time
	touched map[string]*Touch // by name key
	order   []*Touch
	seen    []SeenID // ids this transaction remembered
}

// Touch is one name this transaction set: its records before the
// transaction (expired ones included) and the last records set, packed,
// and the latter as given.
type Touch struct {
	Key, Name            string // the name's key (store.Key) and the name, lowercase
	OldPacked, NewPacked []byte
	New                  []store.Record
}

// NewTx starts a transaction on z at now. The caller holds the engine's
// lock until Undo or Finish.
func NewTx(z *Zone, now time.Time) *Tx {
	return &Tx{z: z, now: now, touched: make(map[string]*Touch)}
}

// Zone is the zone the transaction changes.
func (t *Tx) Zone() *Zone { return t.z }

// Touched lists the names the transaction set, in the order it first set
// them.
func (t *Tx) Touched() []*Touch { return t.order }

// Remembered lists the ids the transaction remembered.
func (t *Tx) Remembered() []SeenID { return t.seen }

func (t *Tx) Now() time.Time { return t.now }

func (t *Tx) Get(name string) ([]store.Record, error) {
	key, err := t.z.KeyOf(name)
	if err != nil {
		return nil, err
	}
	all, err := DecodeRecords(t.z.Packed(key))
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

func (t *Tx) HasDescendants(name string) (bool, error) {
	key, err := t.z.KeyOf(name)
	if err != nil {
		return false, err
	}
	return t.z.HasDescendants(key), nil
}

func (t *Tx) Set(name string, recs []store.Record) error {
	key, err := t.z.KeyOf(name)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if k, _ := store.Key(r.RR.Header().Name); string(k) != key {
			return fmt.Errorf("store: record %q set at name %q", r.RR.Header().Name, name)
		}
	}
	packed, err := EncodeRecords(recs)
	if err != nil {
		return err
	}
	tc, ok := t.touched[key]
	if !ok {
		tc = &Touch{Key: key, Name: store.Canonical(name), OldPacked: t.z.Packed(key)}
		t.touched[key] = tc
		t.order = append(t.order, tc)
	}
	tc.New = append([]store.Record(nil), recs...)
	tc.NewPacked = packed
	t.z.Set(key, packed)
	return nil
}

// DeleteTree implements store.Tx.
func (t *Tx) DeleteTree(name string) (int, error) {
	key, err := t.z.KeyOf(name)
	if err != nil {
		return 0, err
	}
	if key != t.z.apexKey && t.z.OwnerKey(key) == key && t.z.usage[key].Records == 0 {
		return 0, nil
	}
	var names []string
	for k, e := range t.z.names {
		if !strings.HasPrefix(k, key) {
			continue
		}
		var owner string
		err := WalkPacked(e.packed, func(_ int64, wire []byte) error {
			rr, _, err := dns.UnpackRR(wire, 0)
			if err != nil || rr == nil {
				return ErrCorrupt
			}
			owner = rr.Header().Name
			return errStop
		})
		if err != nil && err != errStop {
			return 0, err
		}
		if owner != "" {
			names = append(names, store.Canonical(owner))
		}
	}
	slices.Sort(names) // one order for every engine's events
	for _, n := range names {
		if err := t.Set(n, nil); err != nil {
			return 0, err
		}
	}
	return len(names), nil
}

// errStop ends a walk early.
var errStop = errors.New("stop")

// Remember implements store.Tx.
func (t *Tx) Remember(id []byte, signed time.Time) (bool, error) {
	t.z.seen.Forget(t.now.Add(-store.ReplayWindow).Unix())
	s := SeenID{ID: HashID(id, signed.Unix()), Signed: signed.Unix()}
	if t.z.seen.Has(s.ID) {
		return false, nil
	}
	t.z.seen.Add(s)
	t.seen = append(t.seen, s)
	return true, nil
}

func (t *Tx) Usage(owner string) (store.Usage, error) {
	key, err := t.z.KeyOf(owner)
	if err != nil {
		return store.Usage{}, err
	}
	return t.z.usage[t.z.OwnerKey(key)], nil
}

// Undo puts back what the transaction changed.
func (t *Tx) Undo() {
	for i := len(t.order) - 1; i >= 0; i-- {
		tc := t.order[i]
		t.z.Set(tc.Key, tc.OldPacked)
	}
	for _, s := range t.seen {
		t.z.seen.Remove(s)
	}
}

// Finish ends a transaction that succeeded: it moves the serial if
// anything visible changed, and returns the event. On an error the
// transaction is not finished and must be undone.
func (t *Tx) Finish() (store.Event, error) {
	var ev store.Event
	for _, tc := range t.order {
		old, err := DecodeRecords(tc.OldPacked)
		if err != nil {
			return store.Event{}, err
		}
		added, removed := Diff(old, tc.New)
		if len(added)+len(removed) > 0 {
			ev.Changes = append(ev.Changes, store.Change{Name: tc.Name, Added: added, Removed: removed})
		}
	}
	ev.Serial = t.z.serial
	if len(ev.Changes) > 0 {
		ev.Serial = NextSerial(ev.Serial)
	}
	t.z.serial = ev.Serial
	if t.z.dirty != nil {
		t.z.fresh = append(t.z.fresh, t.seen...)
	}
	return ev, nil
}

// NextSerial is the serial after s (RFC 1982), never 0, which confuses
// some secondaries.
func NextSerial(s uint32) uint32 {
	if s++; s == 0 {
		s = 1
	}
	return s
}

// SweepExpired removes from the zone, in this transaction, every record
// whose lease ended by the transaction's time, and returns how many it
// removed: to subscribers it looks like an UPDATE deleting them.
func (t *Tx) SweepExpired() (int, error) {
	removed := 0
	for _, key := range t.z.Due(t.now) {
		name, err := store.KeyName([]byte(key))
		if err != nil {
			return 0, err
		}
		before := AddUsage(store.Usage{}, t.z.Packed(key), 1).Records
		live, err := t.Get(name)
		if err != nil {
			return 0, err
		}
		removed += before - len(live)
		if err := t.Set(name, live); err != nil {
			return 0, err
		}
	}
	return removed, nil
}
