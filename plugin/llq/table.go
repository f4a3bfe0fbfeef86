package llq

import (
	"container/heap"
	"net/netip"
	"time"
)

// state is where an LLQ is in its life.
//
//	UDP:      setup request ──▶ challenged ──(challenge response)──▶ established
//	TCP, TLS: setup request ─────────────────────────────────────▶ established
//	both:     established ──(lease end, lease-0 refresh, 3 unacknowledged events)──▶ gone
//
// Only an established LLQ gets events, so no event ever goes to an address
// that has not answered its challenge.
type state uint8

const (
	challenged state = iota
	established
)

// qkey is what a change is matched on: a name (lowercase, fully qualified)
// and a type (dns.TypeANY matches every type).
type qkey struct {
	name  string
	qtype uint16
}

// llq is one long-lived query. Its fields are guarded by Server.mu.
type llq struct {
	id      uint64
	q       qkey   // shares its name string with the index's key
	key     string // TSIG key name, "" if set up unsigned
	keyTag  uint32 // which of the key's secrets (members.SecretTag) its client last signed with
	owner   string // what the LLQ counts against for the limit: its key, or the client's address
	state   state
	granted uint32 // seconds, as told to the client
	expires int64  // unix nanoseconds; set through table.renew
	index   int    // in table.byExpiry

	// to is where events go: the client's connection while it is open,
	// else the UDP address (the setup's source for UDP; for TCP, the
	// client's address with its port hint, or its TCP port).
	to   netip.AddrPort
	conn *conn

	// pending are the events sent and not yet acknowledged, by message ID.
	pending map[uint16]*pendingEvent
}

func (l *llq) expired(now time.Time) bool { return now.UnixNano() >= l.expires }

// table holds the live LLQs, indexed so that a change finds its LLQs
// without looking at the others, and the sweep finds the LLQs whose lease
// ended without looking at the others either.
type table struct {
	byID     map[uint64]*llq
	byQ      map[qkey]map[uint64]*llq
	byOwner  map[string]int
	byExpiry expiryHeap
}

func newTable() *table {
	return &table{byID: make(map[uint64]*llq), byQ: make(map[qkey]map[uint64]*llq), byOwner: make(map[string]int)}
}

func (t *table) add(l *llq) {
	set, ok := t.byQ[l.q]
	if !ok {
		set = make(map[uint64]*llq, 1)
		t.byQ[l.q] = set
	} else {
		// Share the name's string with the other LLQs on it.
		for _, other := range set {
			l.q = other.q
			break
		}
	}
	set[l.id] = l
	t.byID[l.id] = l
	heap.Push(&t.byExpiry, l)
	if l.conn != nil && l.conn.llqs != nil {
		l.conn.llqs[l.id] = l
	}
	t.byOwner[l.owner]++
}

func (t *table) remove(l *llq) {
	if t.byID[l.id] != l {
		return
	}
	delete(t.byID, l.id)
	heap.Remove(&t.byExpiry, l.index)
	if set := t.byQ[l.q]; set != nil {
		delete(set, l.id)
		if len(set) == 0 {
			delete(t.byQ, l.q)
		}
	}
	if o := l.owner; t.byOwner[o] <= 1 {
		delete(t.byOwner, o)
	} else {
		t.byOwner[o]--
	}
	if l.conn != nil && l.conn.llqs != nil {
		delete(l.conn.llqs, l.id)
	}
	for _, p := range l.pending {
		p.stop()
	}
	l.pending = nil
}

// find returns the LLQ from or for a client at addr with question q, if
// there is one: duplicate setup requests are answered again, not doubled.
func (t *table) find(q qkey, to netip.AddrPort) *llq {
	for _, l := range t.byQ[q] {
		if l.to == to {
			return l
		}
	}
	return nil
}

// renew sets when l's lease ends, before or after l is added.
func (t *table) renew(l *llq, expires time.Time) {
	l.expires = expires.UnixNano()
	if t.byID[l.id] == l {
		heap.Fix(&t.byExpiry, l.index)
	}
}

// removeExpired removes the LLQs whose lease ended by now, in O(log n)
// each, and returns how many.
func (t *table) removeExpired(now time.Time) int {
	n := 0
	for len(t.byExpiry) > 0 && t.byExpiry[0].expired(now) {
		t.remove(t.byExpiry[0])
		n++
	}
	return n
}

// expiryHeap orders LLQs by the end of their lease.
type expiryHeap []*llq

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires < h[j].expires }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *expiryHeap) Push(x any) {
	l := x.(*llq)
	l.index = len(*h)
	*h = append(*h, l)
}
func (h *expiryHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.index = -1
	return l
}
