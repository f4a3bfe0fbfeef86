// Package boltstore is the embedded zone store: one local bbolt file that
// holds a zone's records keyed by name, an index of lease deadlines, the
// per-owner usage and the SOA serial.
//
// Each name's records are one value, so an update reads and writes only the
// names it touches (plus O(log n) B+tree pages): its cost does not grow with
// the zone. A commit is synced to disk before Update returns, and bbolt's
// copy-on-write pages make the file consistent after a crash at any moment.
package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/miekg/dns"
	bolt "go.etcd.io/bbolt"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// Buckets of the file. Keys in names, usage and the tail of expiry keys
// are store.Key encodings of names.
var (
	bucketNames  = []byte("names")  // name key -> encoded records
	bucketExpiry = []byte("expiry") // big-endian unix nanos ‖ name key -> nothing
	bucketUsage  = []byte("usage")  // owner key -> records u64 ‖ bytes u64
	bucketMeta   = []byte("meta")   // metaZone, metaSerial
	bucketSigned = []byte("signed") // big-endian unix seconds signed ‖ message id -> nothing
	metaZone     = []byte("zone")
	metaSerial   = []byte("serial")
	metaVersion  = []byte("version")
	formatV1     = []byte("1")
)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Now is the clock (time.Now if nil). Tests move it to end leases.
	Now func() time.Time
	// SweepInterval bounds the time between sweeps (default 1s). The
	// store also sweeps when the earliest lease ends.
	SweepInterval time.Duration
	// ManualSweep turns the background sweeper off: only Sweep deletes
	// expired records (they are never served either way). For tests that
	// move a fake clock.
	ManualSweep bool
	// LockTimeout is how long Open waits for another process's lock on the
	// file (default 5s).
	LockTimeout time.Duration
	// NoSync skips fsync on commit: for benchmarks of the in-memory cost
	// only, never for a server.
	NoSync bool
}

// Store is the bbolt implementation of store.Store.
type Store struct {
	db   *bolt.DB
	zone string
	key  []byte // store.Key(zone)
	now  func() time.Time

	// mu serialises writers, so that events are published in commit order.
	mu   sync.Mutex
	feed store.Feed

	stop     chan struct{}
	wake     chan struct{} // a commit may have set an earlier lease end
	sweeping sync.WaitGroup
	closed   sync.Once
}

var _ store.Store = (*Store)(nil)

// Open opens or creates the store file at path for zone. A file made for
// another zone is refused. Records whose lease ended while the file was
// closed are swept at once.
func Open(path, zone string, opts Options) (*Store, error) {
	zone = store.Canonical(zone)
	zkey, err := store.Key(zone)
	if err != nil {
		return nil, fmt.Errorf("zone %q: %w", zone, err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Second
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 5 * time.Second
	}
	if dir := filepath.Dir(path); dir != "" {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("store directory: %w", err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, NoSync: opts.NoSync, NoFreelistSync: true})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store %s is locked by another process", path)
		}
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	s := &Store{db: db, zone: zone, key: zkey, now: opts.Now, stop: make(chan struct{}), wake: make(chan struct{}, 1)}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketNames, bucketExpiry, bucketUsage, bucketMeta, bucketSigned} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch z := meta.Get(metaZone); {
		case z == nil:
			if err := meta.Put(metaZone, []byte(zone)); err != nil {
				return err
			}
			if err := meta.Put(metaVersion, formatV1); err != nil {
				return err
			}
			// Start from the clock, as zone files conventionally do, so
			// that a recreated store does not go back to serial 1.
			return meta.Put(metaSerial, binary.BigEndian.AppendUint32(nil, uint32(s.now().Unix())))
		case string(z) != zone:
			return fmt.Errorf("store %s holds zone %q, not %q", path, z, zone)
		case !bytes.Equal(meta.Get(metaVersion), formatV1):
			return fmt.Errorf("store %s has format %q, this server reads %q", path, meta.Get(metaVersion), formatV1)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	if _, err := s.Sweep(); err != nil {
		db.Close()
		return nil, fmt.Errorf("sweeping expired leases: %w", err)
	}
	if !opts.ManualSweep {
		s.sweeping.Add(1)
		go s.sweepLoop(opts.SweepInterval)
	}
	return s, nil
}

// Zone implements store.Store.
func (s *Store) Zone() string { return s.zone }

// Path returns the file's path.
func (s *Store) Path() string { return s.db.Path() }

// Close implements store.Store.
func (s *Store) Close() error {
	var err error
	s.closed.Do(func() {
		close(s.stop)
		s.sweeping.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.feed.Close()
		err = s.db.Close()
	})
	return err
}

// Subscribe implements store.Store.
func (s *Store) Subscribe(queue int) *store.Subscription { return s.feed.Subscribe(queue) }

// Serial implements store.Store.
func (s *Store) Serial() (serial uint32, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		serial = binary.BigEndian.Uint32(tx.Bucket(bucketMeta).Get(metaSerial))
		return nil
	})
	return serial, err
}

// Lookup implements store.Store.
func (s *Store) Lookup(name string) (rrs []dns.RR, exists bool, err error) {
	key, err := store.Key(name)
	if err != nil {
		return nil, false, err
	}
	now := s.now()
	err = s.db.View(func(tx *bolt.Tx) error {
		names := tx.Bucket(bucketNames)
		recs, err := decodeRecords(names.Get(key))
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Live(now) {
				rrs = append(rrs, r.RR)
			}
		}
		exists = len(rrs) > 0 || hasDescendants(names, key)
		return nil
	})
	return rrs, exists, err
}

// hasDescendants reports whether names holds a key strictly below key.
func hasDescendants(names *bolt.Bucket, key []byte) bool {
	c := names.Cursor()
	k, _ := c.Seek(key)
	if bytes.Equal(k, key) {
		k, _ = c.Next()
	}
	return k != nil && bytes.HasPrefix(k, key)
}

// Update implements store.Store.
func (s *Store) Update(fn func(store.Tx) error) (store.Event, error) {
	return s.update(false, fn)
}

func (s *Store) update(expiry bool, fn func(store.Tx) error) (store.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ev store.Event
	err := s.db.Update(func(btx *bolt.Tx) error {
		tx := &tx{s: s, btx: btx, now: s.now(), touched: make(map[string]*touch)}
		if err := fn(tx); err != nil {
			return err
		}
		var err error
		ev, err = tx.finish()
		return err
	})
	if err != nil {
		return store.Event{}, err
	}
	ev.Expired = expiry
	if len(ev.Changes) > 0 {
		s.feed.Publish(ev)
	}
	if !expiry {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return ev, nil
}

// Sweep deletes every record whose lease has ended, as one transaction
// that looks to subscribers like an UPDATE deleting them. It returns how
// many records it deleted. The store sweeps by itself; Sweep is for tests
// and for Open.
func (s *Store) Sweep() (int, error) {
	now := s.now()
	due, err := s.dueNames(now)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	deleted := 0
	_, err = s.update(true, func(t store.Tx) error {
		deleted = 0
		for _, name := range due {
			// Get leaves out the records that are no longer live.
			live, err := t.Get(name)
			if err != nil {
				return err
			}
			before, err := t.(*tx).all(name)
			if err != nil {
				return err
			}
			if len(live) == len(before) {
				continue
			}
			deleted += len(before) - len(live)
			if err := t.Set(name, live); err != nil {
				return err
			}
		}
		return nil
	})
	return deleted, err
}

// dueNames lists the names that hold a record whose lease ended by now.
func (s *Store) dueNames(now time.Time) (due []string, err error) {
	limit := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	err = s.db.View(func(btx *bolt.Tx) error {
		c := btx.Bucket(bucketExpiry).Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) <= 0; k, _ = c.Next() {
			name, err := store.KeyName(k[8:])
			if err != nil {
				return err
			}
			due = append(due, name)
		}
		return nil
	})
	return due, err
}

// sweepLoop sweeps when the earliest lease ends, so that the delete (and
// its serial bump and event) comes as the record stops being served, and at
// least every interval in case the clock jumped.
func (s *Store) sweepLoop(every time.Duration) {
	defer s.sweeping.Done()
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		case <-t.C:
			// A failed sweep is tried again at the next wake-up; a store
			// that cannot write fails its updates too, which are logged.
			s.Sweep()
		}
		wait := every
		if next, ok := s.nextExpiry(); ok {
			wait = min(wait, max(next.Sub(s.now()), 0))
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

// nextExpiry returns the earliest lease end in the index.
func (s *Store) nextExpiry() (at time.Time, ok bool) {
	s.db.View(func(btx *bolt.Tx) error {
		if k, _ := btx.Bucket(bucketExpiry).Cursor().First(); len(k) >= 8 {
			at, ok = time.Unix(0, int64(binary.BigEndian.Uint64(k))), true
		}
		return nil
	})
	return at, ok
}
