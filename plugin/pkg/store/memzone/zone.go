// Package memzone is the zone in memory that both store engines serve
// from: each name's records packed, the indexes derived from them (names
// below each name, usage per owner, a heap of lease ends), the remembered
// message ids, and transactions on all of it with undo. An engine adds
// durability (boltstore: a log and checkpoints) and decides what lock
// guards the Zone.
package memzone

import (
	"bytes"
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// Zone is the whole zone in memory: what queries read and transactions
// change. Everything in it is derived from the records and the remembered
// ids, so an engine rebuilds it by setting each name again (loading a
// checkpoint, replaying a log). The engine's lock guards it.
//
// Each name's records are kept packed, in the form the log and the file
// hold them (EncodeRecords), in a map entry of their own: a name costs the
// garbage collector two pointers to follow and two objects without
// pointers inside, where decoded records would cost half a dozen objects
// to scan. At a million records that difference was a third of the
// server's CPU.
type Zone struct {
	apex    string // lowercase, fully qualified
	apexKey string // store.Key(apex)
	serial  uint32

	names map[string]entry // by store.Key of the name
	// below counts, for each name, the names strictly below it that hold
	// records: Lookup's "exists" for an empty non-terminal, without an
	// ordered index.
	below  map[string]int
	usage  map[string]store.Usage // by the owner's key (see ownerKey)
	leases leaseHeap              // names holding a lease, earliest end first
	seen   ReplayIDs

	// dirty holds, once TrackChanges was called and since the last
	// TakeChanges, each changed name's records as of now (nil: deleted),
	// and fresh the remembered ids: what an engine that checkpoints
	// writes next.
	dirty map[string][]byte
	fresh []SeenID
}

// entry is one name that holds records, expired ones included until the
// sweep deletes them.
type entry struct {
	packed  []byte // EncodeRecords; never changed in place
	expires int64  // earliest lease end among them, unix nanoseconds; 0 for none
	lease   int    // index in Zone.leases; -1 when expires is 0
}

func New(apex string, serial uint32) (*Zone, error) {
	k, err := store.Key(apex)
	if err != nil {
		return nil, fmt.Errorf("zone %q: %w", apex, err)
	}
	z := &Zone{
		apex:    apex,
		apexKey: string(k),
		serial:  serial,
		names:   make(map[string]entry),
		below:   make(map[string]int),
		usage:   make(map[string]store.Usage),
		seen:    ReplayIDs{ids: make(map[[IDLen]byte]int64), bySecond: make(map[int64][][IDLen]byte)},
	}
	z.leases.z = z
	return z, nil
}

// Apex is the zone's apex, lowercase and fully qualified.
func (z *Zone) Apex() string { return z.apex }

// ApexKey is store.Key of the apex: every name key in the zone starts
// with it.
func (z *Zone) ApexKey() string { return z.apexKey }

// Serial is the zone's SOA serial.
func (z *Zone) Serial() uint32 { return z.serial }

// SetSerial sets the serial, as an engine restores it.
func (z *Zone) SetSerial(s uint32) { z.serial = s }

// Usage is what the owner with key ownerKey (see OwnerKey) holds.
func (z *Zone) Usage(ownerKey string) store.Usage { return z.usage[ownerKey] }

// Seen is the remembered message ids.
func (z *Zone) Seen() *ReplayIDs { return &z.seen }

// TrackChanges starts keeping the names changed and the ids remembered,
// for TakeChanges.
func (z *Zone) TrackChanges() {
	z.dirty = make(map[string][]byte)
	z.fresh = nil
}

// TakeChanges returns what changed since TrackChanges or the last
// TakeChanges: each changed name's packed records (nil: deleted) by key,
// and the ids remembered; and starts anew.
func (z *Zone) TakeChanges() (map[string][]byte, []SeenID) {
	d, f := z.dirty, z.fresh
	z.TrackChanges()
	return d, f
}

// PutBackChanges returns changes that TakeChanges gave and the engine
// could not write, under what changed since (which is newer).
func (z *Zone) PutBackChanges(dirty map[string][]byte, fresh []SeenID) {
	for k, v := range dirty {
		if _, ok := z.dirty[k]; !ok {
			z.dirty[k] = v
		}
	}
	z.fresh = append(fresh, z.fresh...)
}

// KeyOf returns name's key, refusing names outside the zone.
func (z *Zone) KeyOf(name string) (string, error) {
	k, err := store.Key(name)
	if err != nil {
		return "", fmt.Errorf("store: name %q: %w", name, err)
	}
	if !bytes.HasPrefix(k, []byte(z.apexKey)) {
		return "", fmt.Errorf("store: name %q is outside zone %q", name, z.apex)
	}
	return string(k), nil
}

// OwnerKey returns the key of the name that owns key for quotas (see
// store.Owner): the name one label below the apex, or the apex itself.
func (z *Zone) OwnerKey(key string) string {
	if len(key) <= len(z.apexKey) {
		return z.apexKey
	}
	return key[:len(z.apexKey)+1+int(key[len(z.apexKey)])]
}

// Packed returns the records at key as stored, expired ones included.
func (z *Zone) Packed(key string) []byte { return z.names[key].packed }

// Live decodes the records at key that are live at now.
func (z *Zone) Live(key string, now time.Time) ([]dns.RR, error) {
	var rrs []dns.RR
	err := WalkPacked(z.names[key].packed, func(expires int64, wire []byte) error {
		if expires != 0 && now.UnixNano() >= expires {
			return nil
		}
		rr, _, err := dns.UnpackRR(wire, 0)
		if err != nil || rr == nil {
			return ErrCorrupt
		}
		rrs = append(rrs, rr)
		return nil
	})
	return rrs, err
}

// HasDescendants reports whether a name strictly below key holds records.
func (z *Zone) HasDescendants(key string) bool { return z.below[key] > 0 }

// Set replaces the records at key with packed (as EncodeRecords lays
// them out; nil or empty deletes the name) and keeps the counts, the
// usage and the lease heap in step. packed becomes the zone's: the caller
// must not change it afterwards.
func (z *Zone) Set(key string, packed []byte) {
	e, ok := z.names[key]
	if len(packed) == 0 {
		packed = nil
	}
	if z.dirty != nil {
		z.dirty[key] = packed
	}
	owner := z.OwnerKey(key)
	u := AddUsage(AddUsage(z.usage[owner], e.packed, -1), packed, 1)
	if u.Records <= 0 {
		delete(z.usage, owner)
	} else {
		z.usage[owner] = u
	}
	switch {
	case !ok && packed == nil:
		return
	case !ok:
		e.lease = -1
		z.countBelow(key, 1)
	case packed == nil:
		if e.lease >= 0 {
			heap.Remove(&z.leases, e.lease)
		}
		delete(z.names, key)
		z.countBelow(key, -1)
		return
	}
	e.packed = packed
	next := FirstExpiry(packed)
	switch {
	case next == e.expires:
		z.names[key] = e
	case e.lease >= 0 && next == 0:
		e.expires = 0
		z.names[key] = e
		heap.Remove(&z.leases, e.lease)
	case e.lease >= 0:
		e.expires = next
		z.names[key] = e
		z.leases.items[e.lease].at = next
		heap.Fix(&z.leases, e.lease)
	default:
		e.expires = next
		z.names[key] = e
		heap.Push(&z.leases, lease{at: next, key: key})
	}
}

// countBelow adds delta to the count of every ancestor of key within the
// zone. Keys are labels from the root down, each led by its length, so an
// ancestor's key is a prefix ending at a label boundary.
func (z *Zone) countBelow(key string, delta int) {
	for off := len(z.apexKey); off < len(key); off += int(key[off]) + 1 {
		a := key[:off]
		if n := z.below[a] + delta; n > 0 {
			z.below[a] = n
		} else {
			delete(z.below, a)
		}
	}
}

// Due returns the keys of the names holding a record whose lease ended by
// now.
func (z *Zone) Due(now time.Time) []string {
	// The heap's children end no earlier than their parent: walk down
	// from the root only where something ended.
	limit := now.UnixNano()
	var keys []string
	var walk func(i int)
	walk = func(i int) {
		if i < len(z.leases.items) && z.leases.items[i].at <= limit {
			keys = append(keys, z.leases.items[i].key)
			walk(2*i + 1)
			walk(2*i + 2)
		}
	}
	walk(0)
	return keys
}

// NextExpiry returns the earliest lease end.
func (z *Zone) NextExpiry() (time.Time, bool) {
	if len(z.leases.items) == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, z.leases.items[0].at), true
}

// lease is one name in the lease heap.
type lease struct {
	at  int64 // unix nanoseconds
	key string
}

// leaseHeap orders the names holding a lease by its earliest end, so the
// sweeper finds what ended in O(expired), and a renewal moves one name.
// Each name's entry knows its index, for Fix and Remove.
type leaseHeap struct {
	z     *Zone
	items []lease
}

func (h *leaseHeap) Len() int           { return len(h.items) }
func (h *leaseHeap) Less(i, j int) bool { return h.items[i].at < h.items[j].at }
func (h *leaseHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.place(i, i)
	h.place(j, j)
}

// place records index in the entry of the name at i.
func (h *leaseHeap) place(i, index int) {
	if e, ok := h.z.names[h.items[i].key]; ok {
		e.lease = index
		h.z.names[h.items[i].key] = e
	}
}

func (h *leaseHeap) Push(x any) {
	h.items = append(h.items, x.(lease))
	h.place(len(h.items)-1, len(h.items)-1)
}

func (h *leaseHeap) Pop() any {
	last := len(h.items) - 1
	h.place(last, -1)
	l := h.items[last]
	h.items = h.items[:last]
	return l
}

// IDLen is the length of a remembered message's identity: a hash of its
// time signed, key name and MAC. 128 bits make a collision, which would
// refuse one honest message, as likely as guessing the key.
const IDLen = 16

// SeenID is one remembered message: its identity and time signed.
type SeenID struct {
	ID     [IDLen]byte
	Signed int64 // unix seconds
}

// ReplayIDs remembers the signed messages taken within the replay window,
// grouped by the second they were signed in, so that forgetting them as
// the window moves costs one map deletion per message.
type ReplayIDs struct {
	ids      map[[IDLen]byte]int64
	bySecond map[int64][][IDLen]byte
	oldest   int64 // no remembered id was signed before this second
}

// HashID is the identity remembered for a message id signed at signed
// (unix seconds).
func HashID(id []byte, signed int64) [IDLen]byte {
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(signed)))
	h.Write(id)
	var out [IDLen]byte
	copy(out[:], h.Sum(nil))
	return out
}

// Has reports whether id is remembered.
func (r *ReplayIDs) Has(id [IDLen]byte) bool { _, ok := r.ids[id]; return ok }

// Len is how many ids are remembered.
func (r *ReplayIDs) Len() int { return len(r.ids) }

// Add remembers s.
func (r *ReplayIDs) Add(s SeenID) {
	if len(r.ids) == 0 || s.Signed < r.oldest {
		r.oldest = s.Signed
	}
	r.ids[s.ID] = s.Signed
	r.bySecond[s.Signed] = append(r.bySecond[s.Signed], s.ID)
}

// Remove forgets one id that Add just remembered (a transaction's undo).
func (r *ReplayIDs) Remove(s SeenID) {
	delete(r.ids, s.ID)
	l := r.bySecond[s.Signed]
	for i := range l {
		if l[i] == s.ID {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(r.bySecond, s.Signed)
	} else {
		r.bySecond[s.Signed] = l
	}
}

// Forget drops the ids signed before cutoff (unix seconds).
func (r *ReplayIDs) Forget(cutoff int64) {
	if len(r.ids) == 0 {
		r.oldest = cutoff
		return
	}
	if cutoff-r.oldest > int64(len(r.bySecond)) {
		// A long gap since the oldest: walk the seconds held instead.
		for sec, l := range r.bySecond {
			if sec < cutoff {
				for _, id := range l {
					delete(r.ids, id)
				}
				delete(r.bySecond, sec)
			}
		}
	} else {
		for sec := r.oldest; sec < cutoff; sec++ {
			for _, id := range r.bySecond[sec] {
				delete(r.ids, id)
			}
			delete(r.bySecond, sec)
		}
	}
	r.oldest = max(r.oldest, cutoff)
}
