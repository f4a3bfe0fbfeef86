// Package etcdstore is the zone store on etcd, for more than one server:
// every instance on the same key prefix serves the same zone.
//
// # Layout
//
// Under the prefix P (for example /btmm/members.example.com/):
//
//	P zone        the zone's apex; Open refuses a prefix holding another zone
//	P serial      the SOA serial, u32; every commit writes it
//	P log         the events of the last commit (encodeEvents)
//	P n/KEY       the records at a name, packed as the file store packs them
//	              (KEY is store.Key of the name)
//	P r/HASH      a remembered message id (memzone.HashID), its time signed;
//	              each on an etcd lease that ends after the replay window
//	P u/NAME      a user (store.Users) and its keys; see users.go
//
// # Consistency
//
// Each instance holds the whole zone in memory (package memzone), kept up
// to date by an etcd watch on P, and runs transactions on it. A commit is
// one etcd transaction that succeeds only if P serial was not written since
// the instance's copy was (a compare on its ModRevision), and every commit
// writes P serial: so commits are totally ordered across the cluster, and a
// transaction's prerequisites and quota, checked against the copy, hold at
// the moment it commits. A commit that loses the race is run again on the
// copy once it has caught up. An UPDATE is answered after etcd committed it
// (etcd syncs its log on a majority of members first).
//
// A query first asks etcd for P serial (a linearizable read: one round
// trip to the leader), waits until the copy has applied that revision, and
// answers from the copy: every instance answers with every UPDATE
// acknowledged before the query arrived, whichever instance took it. If
// etcd cannot be reached, queries are answered from the copy as it is (the
// log says so once) and UPDATEs fail.
//
// Each instance publishes to its subscribers the events of every commit,
// its own and the others', from P log in revision order, so an LLQ held on
// one instance hears of an UPDATE made on another. If the watch loses
// revisions (etcd compacted them while the instance was cut off) the
// subscriptions end with store.ErrLagged, and their holders read the zone
// again.
//
// Leases: every instance sweeps the records whose lease ended; the sweeps
// are commits like any other, so the first removes the records and the
// others, run again on a copy that has them gone, find nothing to do: one
// removal, one event on each instance.
//
// Group commit: the Updates that arrive while a commit is in flight are
// run one after the other on the copy and committed together in one etcd
// transaction (within etcd's default limit of 128 operations).
package etcdstore

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/memzone"
)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Now is the clock (time.Now if nil). Tests move it to end leases.
	Now func() time.Time
	// SweepInterval bounds the time between sweeps (default 1s).
	SweepInterval time.Duration
	// ManualSweep turns the background sweeper off (tests).
	ManualSweep bool
	// Timeout bounds each request to etcd (default 5s).
	Timeout time.Duration
	// Logf logs what an operator should know (etcd lost and found); nil
	// discards.
	Logf func(format string, args ...any)
}

// Keys under the prefix.
const (
	keyZone   = "zone"
	keySerial = "serial"
	keyLog    = "log"
	dirNames  = "n/"
	dirIDs    = "r/"
)

// Store is the etcd implementation of store.Store.
type Store struct {
	cli    *clientv3.Client
	prefix string
	opts   Options

	// mu guards the copy of the zone and the revision it reflects.
	mu        sync.RWMutex
	z         *memzone.Zone
	users     map[string][]byte // by name, store.EncodeUser (see users.go)
	rev       int64             // the last revision applied to z
	serialRev int64             // P serial's ModRevision as of rev
	applied   *sync.Cond

	feed store.Feed

	commitMu sync.Mutex // held by the one Update committing a group
	gather   sync.Mutex // guards pending
	pending  []*request

	idLease struct {
		sync.Mutex
		id      clientv3.LeaseID
		granted time.Time
	}

	// watchCancel ends the current watch, which the watch loop then
	// starts again; watchMu guards it.
	watchMu     sync.Mutex
	watchCancel context.CancelFunc

	down   downLog
	ctx    context.Context
	cancel context.CancelFunc
	loops  sync.WaitGroup
	wake   chan struct{}
	closed sync.Once
}

var _ store.Store = (*Store)(nil)

// Open opens the zone under prefix on the etcd cluster cli talks to,
// creating it if the prefix is empty. The Store does not close cli.
func Open(cli *clientv3.Client, prefix, zone string, opts Options) (*Store, error) {
	zone = store.Canonical(zone)
	if _, err := store.Key(zone); err != nil {
		return nil, fmt.Errorf("zone %q: %w", zone, err)
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	s := &Store{cli: cli, prefix: prefix, opts: opts, wake: make(chan struct{}, 1)}
	s.applied = sync.NewCond(s.mu.RLocker())
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.down.logf = opts.Logf
	if err := s.load(zone); err != nil {
		s.cancel()
		return nil, err
	}
	s.loops.Add(1)
	go s.watch()
	if !opts.ManualSweep {
		s.loops.Add(1)
		go s.sweepLoop()
	}
	return s, nil
}

func (s *Store) key(k string) string { return s.prefix + k }

// reqCtx bounds one request to etcd; a member without a leader fails it
// at once rather than holding it until an election ends.
func (s *Store) reqCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(clientv3.WithRequireLeader(s.ctx), s.opts.Timeout)
}

// load creates the zone under the prefix if it is new, and reads it into
// memory as of one revision.
func (s *Store) load(zone string) error {
	ctx, cancel := s.reqCtx()
	defer cancel()
	serial := binary.BigEndian.AppendUint32(nil, uint32(s.opts.Now().Unix()))
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.key(keyZone)), "=", 0)).
		Then(clientv3.OpPut(s.key(keyZone), zone), clientv3.OpPut(s.key(keySerial), string(serial))).
		Else(clientv3.OpGet(s.key(keyZone))).
		Commit()
	if err != nil {
		return fmt.Errorf("etcd: creating zone %s under %s: %w", zone, s.prefix, err)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 1 && string(kvs[0].Value) != zone {
			return fmt.Errorf("etcd prefix %s holds zone %q, not %q", s.prefix, kvs[0].Value, zone)
		}
	}
	// Read everything as of one revision, a page at a time.
	rev := resp.Header.Revision
	z, err := memzone.New(zone, 0)
	if err != nil {
		return err
	}
	var serialRev int64
	users := make(map[string][]byte)
	from, end := s.prefix, clientv3.GetPrefixRangeEnd(s.prefix)
	cutoff := s.opts.Now().Add(-store.ReplayWindow).Unix()
	for {
		page, err := s.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithLimit(5000))
		if err != nil {
			return fmt.Errorf("etcd: reading zone %s: %w", zone, err)
		}
		for _, kv := range page.Kvs {
			k := string(kv.Key[len(s.prefix):])
			switch {
			case k == keySerial:
				if len(kv.Value) != 4 {
					return fmt.Errorf("etcd: %s: %w", kv.Key, memzone.ErrCorrupt)
				}
				z.SetSerial(binary.BigEndian.Uint32(kv.Value))
				serialRev = kv.ModRevision
			case strings.HasPrefix(k, dirNames):
				if err := setName(z, k[len(dirNames):], kv.Value); err != nil {
					return fmt.Errorf("etcd: %s: %w", kv.Key, err)
				}
			case strings.HasPrefix(k, dirIDs):
				if id, ok := parseID(k[len(dirIDs):], kv.Value); ok && id.Signed >= cutoff {
					z.Seen().Add(id)
				}
			case strings.HasPrefix(k, dirUsers):
				users[k[len(dirUsers):]] = kv.Value
			}
		}
		if !page.More {
			break
		}
		from = string(page.Kvs[len(page.Kvs)-1].Key) + "\x00"
	}
	s.z, s.users, s.rev, s.serialRev = z, users, rev, serialRev
	return nil
}

// setName puts a name's packed records (nil: deleted) read from etcd
// into z, refusing what the store cannot have written.
func setName(z *memzone.Zone, key string, packed []byte) error {
	if !strings.HasPrefix(key, z.ApexKey()) {
		return errors.New("name outside the zone")
	}
	if _, err := store.KeyName([]byte(key)); err != nil {
		return err
	}
	if err := memzone.WalkPacked(packed, func(int64, []byte) error { return nil }); err != nil {
		return err
	}
	z.Set(key, packed)
	return nil
}

func idKey(id memzone.SeenID) string { return dirIDs + hex.EncodeToString(id.ID[:]) }

func parseID(k string, v []byte) (memzone.SeenID, bool) {
	var id memzone.SeenID
	h, err := hex.DecodeString(k)
	if err != nil || len(h) != memzone.IDLen || len(v) != 8 {
		return id, false
	}
	copy(id.ID[:], h)
	id.Signed = int64(binary.BigEndian.Uint64(v))
	return id, true
}

// Zone implements store.Store.
func (s *Store) Zone() string { return s.z.Apex() }

// Subscribe implements store.Store.
func (s *Store) Subscribe(queue int) *store.Subscription { return s.feed.Subscribe(queue) }

// Close implements store.Store. Updates waiting fail with store.ErrClosed.
func (s *Store) Close() error {
	s.closed.Do(func() {
		s.cancel()
		s.mu.Lock()
		s.applied.Broadcast()
		s.mu.Unlock()
		s.loops.Wait()
		s.feed.Close()
	})
	return nil
}

// catchUp makes the copy as new as the last commit etcd acknowledged to
// anyone: it reads P serial (linearizable) and waits for the watch to
// apply that revision. If etcd cannot be reached it returns false, and
// the copy is as it is; while etcd stays unreachable, queries do not wait
// for it: one probe a second finds when it is back.
func (s *Store) catchUp() bool {
	if s.down.isDown() {
		s.probe()
		return false
	}
	rev, err := s.lastCommit()
	if err != nil {
		s.down.failed(err)
		return false
	}
	s.down.ok()
	return s.waitApplied(rev)
}

// lastCommit reads the revision of the last commit to the zone.
func (s *Store) lastCommit() (int64, error) {
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(s.ctx), min(s.opts.Timeout, time.Second))
	defer cancel()
	resp, err := s.cli.Get(ctx, s.key(keySerial))
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) != 1 {
		return 0, errors.New("the zone's serial is gone")
	}
	return resp.Kvs[0].ModRevision, nil
}

// probe checks, at most once a second and off the caller's path, whether
// etcd is reachable again.
func (s *Store) probe() {
	if !s.down.startProbe() {
		return
	}
	go func() {
		_, err := s.lastCommit()
		if err == nil {
			s.down.ok()
		}
		time.Sleep(time.Second)
		s.down.endProbe()
	}()
}

// waitApplied waits until the copy reflects revision rev, at most the
// request timeout. A watch that has not delivered a committed revision
// within staleWatch is on a member that went away (the client library can
// take seconds to notice): it is started again, on a member that answers.
func (s *Store) waitApplied(rev int64) bool {
	if s.waitAppliedFor(rev, staleWatch) {
		return true
	}
	s.restartWatch()
	return s.waitAppliedFor(rev, s.opts.Timeout)
}

// staleWatch is how long a committed revision may take to come through
// the watch before the watch is started again.
const staleWatch = 300 * time.Millisecond

func (s *Store) waitAppliedFor(rev int64, d time.Duration) bool {
	deadline := time.AfterFunc(d, func() {
		s.mu.Lock()
		s.applied.Broadcast()
		s.mu.Unlock()
	})
	defer deadline.Stop()
	until := time.Now().Add(d)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for s.rev < rev && s.ctx.Err() == nil && time.Now().Before(until) {
		s.applied.Wait()
	}
	return s.rev >= rev
}

// Serial implements store.Store.
func (s *Store) Serial() (uint32, error) {
	s.catchUp()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.z.Serial(), nil
}

// Lookup implements store.Store.
func (s *Store) Lookup(name string) ([]dns.RR, bool, error) {
	key, err := s.z.KeyOf(name)
	if err != nil {
		return nil, false, err
	}
	s.catchUp()
	now := s.opts.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	rrs, err := s.z.Live(key, now)
	if err != nil {
		return nil, false, fmt.Errorf("store: records at %s: %w", name, err)
	}
	return rrs, len(rrs) > 0 || s.z.HasDescendants(key), nil
}

// downLog says once that etcd is unreachable, and once that it is back.
type downLog struct {
	mu      sync.Mutex
	down    bool
	probing bool
	logf    func(string, ...any)
}

func (d *downLog) isDown() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.down
}

func (d *downLog) startProbe() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.probing {
		return false
	}
	d.probing = true
	return true
}

func (d *downLog) endProbe() {
	d.mu.Lock()
	d.probing = false
	d.mu.Unlock()
}

func (d *downLog) failed(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.down {
		d.down = true
		d.logf("etcd unreachable (%v): answering from this instance's copy of the zone, refusing updates", err)
	}
}

func (d *downLog) ok() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		d.down = false
		d.logf("etcd reachable again")
	}
}
