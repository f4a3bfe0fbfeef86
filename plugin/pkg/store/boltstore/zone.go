package boltstore

import (
	"bytes"
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// memZone is the whole zone in memory: what queries read and transactions
// change. Everything in it is derived from the records and the remembered
// ids, so loading the checkpoint and replaying the log rebuilds it. The
// Store's mutex guards it.
type memZone struct {
	apex    string // lowercase, fully qualified
	apexKey string // store.Key(apex)
	serial  uint32

	names map[string]*entry // by store.Key of the name
	// below counts, for each name, the names strictly below it that hold
	// records: Lookup's "exists" for an empty non-terminal, without an
	// ordered index.
	below  map[string]int
	usage  map[string]store.Usage // by owner (store.Owner)
	leases leaseHeap              // names holding a lease, earliest end first
	seen   replayIDs

	// dirty holds, since the last checkpoint began, each changed name's
	// records as of now (nil: deleted), and fresh the remembered ids: what
	// the next checkpoint writes to the file.
	dirty map[string][]store.Record
	fresh []seenID
}

// entry is one name that holds records, expired ones included until the
// sweep deletes them.
type entry struct {
	key     string
	name    string // lowercase, fully qualified
	recs    []store.Record
	expires time.Time // earliest lease end among recs; zero for none
	index   int       // in zone.leases; -1 when expires is zero
}

func newZone(apex string, serial uint32) (*memZone, error) {
	k, err := store.Key(apex)
	if err != nil {
		return nil, fmt.Errorf("zone %q: %w", apex, err)
	}
	return &memZone{
		apex:    apex,
		apexKey: string(k),
		serial:  serial,
		names:   make(map[string]*entry),
		below:   make(map[string]int),
		usage:   make(map[string]store.Usage),
		seen:    replayIDs{ids: make(map[[idLen]byte]int64), bySecond: make(map[int64][][idLen]byte)},
		dirty:   make(map[string][]store.Record),
	}, nil
}

// keyOf returns name's key, refusing names outside the zone.
func (z *memZone) keyOf(name string) (string, error) {
	k, err := store.Key(name)
	if err != nil {
		return "", fmt.Errorf("store: name %q: %w", name, err)
	}
	if !bytes.HasPrefix(k, []byte(z.apexKey)) {
		return "", fmt.Errorf("store: name %q is outside zone %q", name, z.apex)
	}
	return string(k), nil
}

// records returns every record at key, expired ones included. The slice
// is the zone's: callers must not change it.
func (z *memZone) records(key string) []store.Record {
	if e := z.names[key]; e != nil {
		return e.recs
	}
	return nil
}

// hasDescendants reports whether a name strictly below key holds records.
func (z *memZone) hasDescendants(key string) bool { return z.below[key] > 0 }

// set replaces the records at key (name is its canonical name) and keeps
// the counts, the usage and the lease heap in step. recs becomes the
// zone's: the caller must not change it afterwards.
func (z *memZone) set(key, name string, recs []store.Record) {
	e := z.names[key]
	var old []store.Record
	if e != nil {
		old = e.recs
	}
	if len(recs) == 0 {
		recs = nil
	}
	z.dirty[key] = recs
	owner := store.Owner(z.apex, name)
	u := addUsage(addUsage(z.usage[owner], old, -1), recs, 1)
	if u.Records <= 0 {
		delete(z.usage, owner)
	} else {
		z.usage[owner] = u
	}
	switch {
	case e == nil && recs == nil:
		return
	case e == nil:
		e = &entry{key: key, name: name, index: -1}
		z.names[key] = e
		z.countBelow(key, 1)
	case recs == nil:
		delete(z.names, key)
		z.countBelow(key, -1)
	}
	e.recs = recs
	next, _ := firstExpiry(recs)
	switch {
	case next.Equal(e.expires):
	case e.index >= 0 && next.IsZero():
		heap.Remove(&z.leases, e.index)
	case e.index >= 0:
		e.expires = next
		heap.Fix(&z.leases, e.index)
	default:
		e.expires = next
		heap.Push(&z.leases, e)
	}
	e.expires = next
}

// countBelow adds delta to the count of every ancestor of key within the
// zone. Keys are labels from the root down, each led by its length, so an
// ancestor's key is a prefix ending at a label boundary.
func (z *memZone) countBelow(key string, delta int) {
	for off := len(z.apexKey); off < len(key); off += int(key[off]) + 1 {
		a := key[:off]
		if n := z.below[a] + delta; n > 0 {
			z.below[a] = n
		} else {
			delete(z.below, a)
		}
	}
}

// due returns the names holding a record whose lease ended by now.
func (z *memZone) due(now time.Time) []string {
	// The heap's children end no earlier than their parent: walk down
	// from the root only where something ended.
	var keys []string
	var walk func(i int)
	walk = func(i int) {
		if i < len(z.leases) && !z.leases[i].expires.After(now) {
			keys = append(keys, z.leases[i].key)
			walk(2*i + 1)
			walk(2*i + 2)
		}
	}
	walk(0)
	return keys
}

// nextExpiry returns the earliest lease end.
func (z *memZone) nextExpiry() (time.Time, bool) {
	if len(z.leases) == 0 {
		return time.Time{}, false
	}
	return z.leases[0].expires, true
}

// leaseHeap orders the names holding a lease by its earliest end, so the
// sweeper finds what ended in O(expired), and a renewal moves one name.
type leaseHeap []*entry

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h leaseHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *leaseHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *leaseHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// idLen is the length of a remembered message's identity: a hash of its
// time signed, key name and MAC. 128 bits make a collision, which would
// refuse one honest message, as likely as guessing the key.
const idLen = 16

// seenID is one remembered message: its identity and time signed.
type seenID struct {
	id     [idLen]byte
	signed int64 // unix seconds
}

// replayIDs remembers the signed messages taken within the replay window,
// grouped by the second they were signed in, so that forgetting them as
// the window moves costs one map deletion per message.
type replayIDs struct {
	ids      map[[idLen]byte]int64
	bySecond map[int64][][idLen]byte
	oldest   int64 // no remembered id was signed before this second
}

func hashID(id []byte, signed int64) [idLen]byte {
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(signed)))
	h.Write(id)
	var out [idLen]byte
	copy(out[:], h.Sum(nil))
	return out
}

func (r *replayIDs) has(id [idLen]byte) bool { _, ok := r.ids[id]; return ok }

func (r *replayIDs) add(s seenID) {
	if len(r.ids) == 0 || s.signed < r.oldest {
		r.oldest = s.signed
	}
	r.ids[s.id] = s.signed
	r.bySecond[s.signed] = append(r.bySecond[s.signed], s.id)
}

// remove forgets one id that add just remembered (a transaction's undo).
func (r *replayIDs) remove(s seenID) {
	delete(r.ids, s.id)
	l := r.bySecond[s.signed]
	for i := range l {
		if l[i] == s.id {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(r.bySecond, s.signed)
	} else {
		r.bySecond[s.signed] = l
	}
}

// forget drops the ids signed before cutoff.
func (r *replayIDs) forget(cutoff int64) {
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
