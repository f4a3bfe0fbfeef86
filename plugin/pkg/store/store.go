// Package store defines the zone store that the btmm plugins share: the
// records of one zone, each with the moment its lease ends, changed in
// atomic transactions and watched through a change feed.
//
// The embedded implementation is in package boltstore. Everything here is
// independent of the engine, so that another one (etcd, for more than one
// server) can stand behind the same plugins.
package store

import (
	"errors"
	"time"

	"github.com/miekg/dns"
)

// Record is one resource record and the moment its lease ends.
type Record struct {
	RR dns.RR
	// Expires is when the record's lease ends; the zero time means the
	// record has no lease and stays until an UPDATE deletes it.
	Expires time.Time
}

// Live reports whether r may still be served at now.
func (r Record) Live(now time.Time) bool {
	return r.Expires.IsZero() || now.Before(r.Expires)
}

// Usage is what one owner (see Owner) holds in the store.
type Usage struct {
	Records int
	Bytes   int // wire length of the records, uncompressed
}

// Store holds the records of one zone.
//
// Names passed in are fully qualified; case does not matter.
type Store interface {
	// Zone returns the zone's apex, lowercase and fully qualified.
	Zone() string
	// Serial returns the SOA serial, which changes with every commit
	// that changes what the zone answers.
	Serial() (uint32, error)
	// Lookup returns the live records at name, and whether the name exists:
	// it holds records, or a name below it does (an empty non-terminal).
	Lookup(name string) (rrs []dns.RR, exists bool, err error)
	// Update runs fn in one transaction. If fn returns an error nothing is
	// changed and the error is returned as is. Otherwise the changes are
	// durable when Update returns, and the returned Event describes them
	// (it has no Changes if nothing visible changed).
	Update(fn func(Tx) error) (Event, error)
	// Subscribe starts a subscription to the change feed; see Feed.
	Subscribe(queue int) *Subscription
	// Close stops the store. Subscriptions end with ErrClosed.
	Close() error
	// Users are the zone's users and their keys.
	Users
}

// Tx is one transaction of Store.Update. It is only valid inside fn.
type Tx interface {
	// Now is the time the transaction runs at: what is live and what
	// new leases count from.
	Now() time.Time
	// Get returns the live records at name, as of this transaction.
	Get(name string) ([]Record, error)
	// Set replaces all records at name. Every record's owner must be name
	// (case aside). An empty recs deletes the name.
	Set(name string, recs []Record) error
	// HasDescendants reports whether any name strictly below name holds
	// records, as of this transaction.
	HasDescendants(name string) (bool, error)
	// DeleteTree deletes the records at name and at every name below it,
	// and returns how many names held records. It costs a pass over the
	// zone, unless name is an owner (see Owner) that holds nothing.
	DeleteTree(name string) (int, error)
	// Usage returns what owner holds, as of this transaction.
	Usage(owner string) (Usage, error)
	// Remember records id, a signed message's identity (its key and MAC),
	// as signed at the given time, and reports whether it was new: false
	// means the same message was remembered before, and is a replay. Ids
	// are kept with the records, so a restart forgets none, for
	// ReplayWindow after the time signed, then dropped.
	Remember(id []byte, signed time.Time) (fresh bool, err error)
}

// ReplayWindow is how long after its time signed a message's identity is
// remembered: as long as the message could be accepted at all, since TSIG
// refuses a time signed further than 300 s from the server's clock (RFC
// 8945's recommended fudge, the most the server honours).
const ReplayWindow = 300 * time.Second

// Event is one committed transaction's effect on the zone.
type Event struct {
	// Serial is the zone's serial after the commit.
	Serial uint32
	// Expired marks the removals that a lease's end made, rather than an
	// UPDATE.
	Expired bool
	// Changes lists each name whose records changed, in the order the
	// transaction first touched them.
	Changes []Change
	// Users names the users (see Users) whose keys were added, replaced
	// or removed. Such an event changes no records: its Changes is empty
	// and its Serial is the zone's as it was.
	Users []string
}

// Change is what one transaction did to the records at one name. A record
// whose TTL changed appears in both lists; a record whose lease alone was
// renewed appears in neither.
type Change struct {
	Name    string // lowercase, fully qualified
	Added   []dns.RR
	Removed []dns.RR
}

var (
	// ErrLagged ends a subscription whose queue overflowed: the subscriber
	// missed events and must resynchronise from the store itself.
	ErrLagged = errors.New("store: subscriber fell behind and missed events")
	// ErrClosed ends a subscription when it or the store is closed.
	ErrClosed = errors.New("store: closed")
)

// Owner returns the name that owns name for quotas: the name one label
// below zone on the way to name, or zone itself for the apex. Both names
// must be lowercase and fully qualified, name at or under zone.
func Owner(zone, name string) string {
	if len(name) <= len(zone) {
		return zone
	}
	labels := dns.SplitDomainName(name[:len(name)-len(zone)])
	if len(labels) == 0 {
		return zone
	}
	return labels[len(labels)-1] + "." + zone
}
