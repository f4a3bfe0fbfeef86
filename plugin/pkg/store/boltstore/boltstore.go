// Package boltstore is the embedded zone store: the zone in memory, a
// write-ahead log that makes each commit durable, and a bbolt file that
// holds the checkpoint the log is replayed onto.
//
// Queries read the zone in memory: a map lookup and a decode of the
// name's packed records, no storage read, and never behind a sync. An Update runs its transaction on the
// zone under a lock (microseconds), appends its log record to the group
// of records waiting for the disk, and waits. One Update at a time (the
// first to find the disk free) writes the whole group with one write and
// one fdatasync, then publishes the group's events in commit order and
// releases the group's Updates: however many UPDATEs arrive together,
// they share a sync (group commit). A transaction that fails is undone in
// memory and logs nothing, so it changes nothing of its own and nothing
// of the others in its group, and each transaction sees the ones applied
// before it. (A query may see a change some microseconds before its
// sync; a crash in between takes back a change nobody was told of.)
//
// Each time a log segment fills, the names changed since the previous
// checkpoint are written into the bbolt file in one transaction (bbolt
// syncs it), beside the sequence number of the last record they include,
// and the segments before it are deleted. Open loads the file and replays
// the log after that number, so an acknowledged update survives kill -9
// at any moment, and a torn last record (never acknowledged) is dropped.
//
// Why not bbolt alone: a bbolt commit syncs twice (its pages, then its
// meta page) and takes one writer at a time, so every UPDATE paid two
// syncs and waited for the others'. Why not an LSM engine with a log of
// its own: the zone must be in memory for the read path anyway, and the
// log plus a checkpoint every few hundred thousand updates is all the
// durability a zone this size needs.
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
	"github.com/openbtmm/btmm/plugin/pkg/store/memzone"
)

// Buckets of the file, the checkpoint. Keys in names are store.Key
// encodings of names.
var (
	bucketNames  = []byte("names")  // name key -> encoded records
	bucketMeta   = []byte("meta")   // metaZone, metaSerial, metaVersion, metaApplied
	bucketSigned = []byte("signed") // big-endian unix seconds signed ‖ id hash -> nothing
	// bucketUsers: see users.go
	metaZone    = []byte("zone")
	metaSerial  = []byte("serial")
	metaVersion = []byte("version")
	metaApplied = []byte("applied") // last log record in the file, u64
	formatV1    = []byte("1")
	formatV2    = []byte("2")
	// Buckets of format 1 that format 2 keeps in memory only.
	bucketExpiryV1 = []byte("expiry")
	bucketUsageV1  = []byte("usage")
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
	// NoSync skips every sync: for benchmarks of the in-memory cost only,
	// never for a server.
	NoSync bool
	// SegmentSize is the most a log segment grows to (default 64 MiB):
	// the first is 1 MiB, each next one twice as large. The store
	// checkpoints at the first segment's end after this much log.
	SegmentSize int64
}

// Store is the embedded implementation of store.Store.
type Store struct {
	db   *bolt.DB
	opts Options

	// mu guards the zone and the group being gathered; queries take it
	// shared, transactions exclusive.
	mu     sync.RWMutex
	z      *memzone.Zone
	seq    uint64 // the last log record's sequence number
	group  *group
	logged int64 // octets logged since the last checkpoint; commitMu guards it
	failed error // the log could not be written: no more updates

	feed store.Feed
	log  *wal

	commitMu    sync.Mutex       // held by the one transaction writing a group
	checkpoints chan *checkpoint // to the checkpointer, in order
	stop        chan struct{}
	wake        chan struct{} // a commit may have set an earlier lease end
	loops       sync.WaitGroup
	closed      sync.Once
}

// group is the transactions waiting for one sync.
type group struct {
	buf    []byte // the frame of their log records (see newFrame)
	first  uint64 // sequence number of the first record in buf
	events []store.Event
	done   chan struct{} // closed when they are durable, or failed
	err    error
}

func newGroup(first uint64) *group {
	return &group{buf: newFrame(), first: first, done: make(chan struct{})}
}

var _ store.Store = (*Store)(nil)

// Open opens or creates the store file at path for zone, and its log in
// the directory path+".wal". A file made for another zone is refused.
// Records whose lease ended while the store was closed are swept at once.
func Open(path, zone string, opts Options) (*Store, error) {
	zone = store.Canonical(zone)
	if _, err := store.Key(zone); err != nil {
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
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 64 << 20
	}
	if dir := filepath.Dir(path); dir != "" {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("store directory: %w", err)
		}
	}
	// The freelist is written with every bbolt commit (checkpoints and
	// changes of users, both rare), so that opening reads it rather than
	// walking every page of the file, which with a million users made the
	// whole file resident at start-up.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, NoSync: opts.NoSync})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store %s is locked by another process", path)
		}
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	s := &Store{
		db: db, opts: opts,
		checkpoints: make(chan *checkpoint, 16),
		stop:        make(chan struct{}),
		wake:        make(chan struct{}, 1),
	}
	if err := s.load(path, zone); err != nil {
		db.Close()
		return nil, err
	}
	s.group = newGroup(s.seq + 1)
	s.loops.Add(1)
	go s.checkpointLoop()
	if _, err := s.Sweep(); err != nil {
		s.Close()
		return nil, fmt.Errorf("sweeping expired leases: %w", err)
	}
	if !opts.ManualSweep {
		s.loops.Add(1)
		go s.sweepLoop(opts.SweepInterval)
	}
	return s, nil
}

// load reads the checkpoint into memory, replays the log onto it, writes
// what the log added into the file and starts a fresh log.
func (s *Store) load(path, zone string) error {
	var applied uint64
	var serial uint32
	err := s.db.Update(func(btx *bolt.Tx) error {
		for _, b := range [][]byte{bucketNames, bucketMeta, bucketSigned, bucketUsers} {
			if _, err := btx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := btx.Bucket(bucketMeta)
		switch z := meta.Get(metaZone); {
		case z == nil:
			// Start from the clock, as zone files conventionally do, so
			// that a recreated store does not go back to serial 1.
			for k, v := range map[string][]byte{
				string(metaZone): []byte(zone), string(metaVersion): formatV2,
				string(metaSerial):  binary.BigEndian.AppendUint32(nil, uint32(s.opts.Now().Unix())),
				string(metaApplied): make([]byte, 8),
			} {
				if err := meta.Put([]byte(k), v); err != nil {
					return err
				}
			}
		case string(z) != zone:
			return fmt.Errorf("store %s holds zone %q, not %q", path, z, zone)
		case bytes.Equal(meta.Get(metaVersion), formatV1):
			if err := upgradeV1(btx); err != nil {
				return fmt.Errorf("store %s: upgrading from format 1: %w", path, err)
			}
		case !bytes.Equal(meta.Get(metaVersion), formatV2):
			return fmt.Errorf("store %s has format %q, this server reads %q", path, meta.Get(metaVersion), formatV2)
		}
		serial = binary.BigEndian.Uint32(meta.Get(metaSerial))
		applied = binary.BigEndian.Uint64(meta.Get(metaApplied))
		return nil
	})
	if err != nil {
		return err
	}
	if s.z, err = memzone.New(zone, serial); err != nil {
		return err
	}
	err = s.db.View(func(btx *bolt.Tx) error {
		if err := btx.Bucket(bucketNames).ForEach(func(k, v []byte) error {
			// The layout is checked here, each record's data as it is read.
			if err := memzone.WalkPacked(v, func(int64, []byte) error { return nil }); err != nil || !bytes.HasPrefix(k, []byte(s.z.ApexKey())) {
				name, _ := store.KeyName(k)
				return fmt.Errorf("name %s: %w", name, memzone.ErrCorrupt)
			}
			s.z.Set(string(k), bytes.Clone(v))
			return nil
		}); err != nil {
			return err
		}
		return btx.Bucket(bucketSigned).ForEach(func(k, _ []byte) error {
			if len(k) != 8+memzone.IDLen {
				return memzone.ErrCorrupt
			}
			var id memzone.SeenID
			id.Signed = int64(binary.BigEndian.Uint64(k))
			copy(id.ID[:], k[8:])
			s.z.Seen().Add(id)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("loading store %s: %w", path, err)
	}
	s.z.TrackChanges()

	logDir := path + ".wal"
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return err
	}
	s.seq, err = replay(logDir, applied, func(payload []byte) error {
		l, err := decodeTx(payload)
		if err != nil {
			return err
		}
		for i, key := range l.keys {
			if !bytes.HasPrefix([]byte(key), []byte(s.z.ApexKey())) {
				name, _ := store.KeyName([]byte(key))
				return fmt.Errorf("name %s outside the zone", name)
			}
			s.z.Set(key, bytes.Clone(l.packed[i]))
		}
		seen := s.z.Seen()
		for _, id := range l.seen {
			if !seen.Has(id.ID) {
				seen.Add(id)
			}
		}
		s.z.PutBackChanges(nil, l.seen)
		s.z.SetSerial(l.serial)
		return nil
	})
	if err != nil {
		return fmt.Errorf("replaying the log of %s: %w", path, err)
	}
	if s.seq > applied {
		if err := s.writeCheckpoint(s.snapshotLocked()); err != nil {
			return fmt.Errorf("checkpointing the replayed log of %s: %w", path, err)
		}
	}
	s.log, err = openWAL(logDir, s.opts.SegmentSize, s.opts.NoSync, s.seq+1)
	return err
}

// upgradeV1 turns a file of format 1, which kept the lease index and the
// usage counters on disk and remembered ids whole, into format 2.
func upgradeV1(btx *bolt.Tx) error {
	for _, b := range [][]byte{bucketExpiryV1, bucketUsageV1} {
		if btx.Bucket(b) != nil {
			if err := btx.DeleteBucket(b); err != nil {
				return err
			}
		}
	}
	signed := btx.Bucket(bucketSigned)
	var keys [][]byte
	signed.ForEach(func(k, _ []byte) error { keys = append(keys, bytes.Clone(k)); return nil })
	for _, k := range keys {
		if err := signed.Delete(k); err != nil {
			return err
		}
		if len(k) < 8 {
			continue
		}
		at := int64(binary.BigEndian.Uint64(k))
		h := memzone.HashID(k[8:], at)
		if err := signed.Put(append(binary.BigEndian.AppendUint64(nil, uint64(at)), h[:]...), []byte{1}); err != nil {
			return err
		}
	}
	meta := btx.Bucket(bucketMeta)
	if err := meta.Put(metaApplied, make([]byte, 8)); err != nil {
		return err
	}
	return meta.Put(metaVersion, formatV2)
}

// Zone implements store.Store.
func (s *Store) Zone() string { return s.z.Apex() }

// Path returns the file's path.
func (s *Store) Path() string { return s.db.Path() }

// Close implements store.Store: it writes what is pending, checkpoints
// (so that the next Open has no log to replay) and closes the file.
func (s *Store) Close() error { return s.shutdown(true) }

// shutdown stops the store and writes what transactions gathered before it.
// With checkpoint it then brings the file up to date, unless the log
// failed (what memory holds beyond the log was never acknowledged);
// without, it leaves the file and the log as a crash would.
func (s *Store) shutdown(checkpoint bool) error {
	var err error
	s.closed.Do(func() {
		s.mu.Lock()
		if s.failed == nil {
			s.failed = store.ErrClosed
		}
		s.mu.Unlock()
		close(s.stop)
		// Any transaction still to get commitMu will find its group done.
		s.commitMu.Lock()
		s.commit()
		s.commitMu.Unlock()
		close(s.checkpoints)
		s.loops.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.feed.Close()
		if checkpoint && s.failed == store.ErrClosed {
			if err = s.writeCheckpoint(s.snapshotLocked()); err == nil {
				err = s.log.removeBefore(s.seq + 1)
			}
		}
		err = errors.Join(err, s.log.close(), s.db.Close())
	})
	return err
}

// Subscribe implements store.Store.
func (s *Store) Subscribe(queue int) *store.Subscription { return s.feed.Subscribe(queue) }

// Serial implements store.Store.
func (s *Store) Serial() (uint32, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.z.Serial(), nil
}

// Lookup implements store.Store. The records are decoded for the caller,
// who may keep or change them.
func (s *Store) Lookup(name string) (rrs []dns.RR, exists bool, err error) {
	key, err := s.z.KeyOf(name)
	if err != nil {
		return nil, false, err
	}
	now := s.opts.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if rrs, err = s.z.Live(key, now); err != nil {
		return nil, false, fmt.Errorf("store: records at %s: %w", name, err)
	}
	return rrs, len(rrs) > 0 || s.z.HasDescendants(key), nil
}

// Update implements store.Store.
func (s *Store) Update(fn func(store.Tx) error) (store.Event, error) {
	return s.update(false, fn)
}

func (s *Store) update(expiry bool, fn func(store.Tx) error) (store.Event, error) {
	s.mu.Lock()
	if s.failed != nil {
		s.mu.Unlock()
		return store.Event{}, s.failed
	}
	t := memzone.NewTx(s.z, s.opts.Now())
	if err := fn(t); err != nil {
		t.Undo()
		s.mu.Unlock()
		return store.Event{}, err
	}
	ev, err := t.Finish()
	if err != nil {
		t.Undo()
		s.mu.Unlock()
		return store.Event{}, err
	}
	var rec []byte
	if len(t.Touched()) > 0 || len(t.Remembered()) > 0 {
		rec = encodeTx(s.seq+1, ev.Serial, t.Touched(), t.Remembered())
	}
	ev.Expired = expiry
	g := s.group
	if rec != nil {
		s.seq++
		g.buf = addRecord(g.buf, rec)
	}
	if len(ev.Changes) > 0 {
		g.events = append(g.events, ev)
	}
	s.mu.Unlock()

	// Even a transaction that wrote nothing waits: what it read may be in
	// this group or the one being written, and it must not answer on the
	// strength of a change that a crash could still take back.
	//
	// Whoever gets commitMu writes the group gathered so far, its own and
	// those of the transactions that came while the previous write
	// synced; they find theirs done when they get commitMu in turn. One
	// transaction alone commits its own, with no hand-off to another
	// goroutine.
	s.commitMu.Lock()
	select {
	case <-g.done:
	default:
		s.commit()
	}
	s.commitMu.Unlock()
	<-g.done
	if g.err != nil {
		return store.Event{}, g.err
	}
	if !expiry {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return ev, nil
}

// commit makes the gathered group durable, publishes its events and
// releases its transactions; the caller holds commitMu. When the log's
// segment is full it starts a new one, and once the log since the last
// checkpoint is as long as the largest segment, it hands a checkpoint of
// everything up to this group to the checkpointer: small segments for a
// quiet store, and checkpoints no more often than every SegmentSize of
// log for a busy one.
func (s *Store) commit() {
	s.mu.Lock()
	g := s.group
	s.group = newGroup(s.seq + 1)
	var c *checkpoint
	pending := len(g.buf) > frameHeader
	rotate := pending && !s.log.fits(len(g.buf))
	if rotate && s.logged >= s.opts.SegmentSize {
		c = s.snapshotLocked()
		c.segment = g.first
		s.logged = 0
	}
	s.mu.Unlock()
	s.logged += int64(len(g.buf))

	var err error
	if pending {
		if rotate {
			err = s.log.rotate(g.first, len(g.buf))
		}
		if err == nil {
			err = s.log.append(sealFrame(g.buf))
		}
	}
	if err != nil {
		// After a failed write or sync nothing says what reached the disk:
		// take no more updates. What the group changed in memory stays
		// served until a restart replays the log as it is.
		err = fmt.Errorf("store: writing the log (no more updates until a restart): %w", err)
		s.mu.Lock()
		s.failed = err
		s.mu.Unlock()
	} else {
		for _, ev := range g.events {
			s.feed.Publish(ev)
		}
		if c != nil {
			s.checkpoints <- c
		}
	}
	g.err = err
	close(g.done)
}
