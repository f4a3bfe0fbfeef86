package etcdstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/memzone"
)

// Bounds of one etcd transaction. etcd refuses a transaction of more than
// 128 operations (--max-txn-ops) or 1.5 MiB (--max-request-bytes) by
// default; a group stays within both, with room for the serial and the
// event log.
const (
	maxGroupOps   = 120
	maxGroupBytes = 512 << 10
	// maxRetries bounds how often a group is run again after losing the
	// race to another instance's commit.
	maxRetries = 100
)

// errTooLarge refuses one transaction that alone exceeds a group's bounds.
var errTooLarge = errors.New("etcdstore: transaction too large for one etcd transaction")

// request is one Update waiting in a group.
type request struct {
	fn     func(store.Tx) error
	expiry bool
	done   chan struct{}
	ev     store.Event
	err    error
}

// Update implements store.Store.
func (s *Store) Update(fn func(store.Tx) error) (store.Event, error) {
	return s.update(false, fn)
}

func (s *Store) update(expiry bool, fn func(store.Tx) error) (store.Event, error) {
	if s.ctx.Err() != nil {
		return store.Event{}, store.ErrClosed
	}
	r := &request{fn: fn, expiry: expiry, done: make(chan struct{})}
	s.gather.Lock()
	s.pending = append(s.pending, r)
	s.gather.Unlock()
	// As in the file store: whoever gets commitMu commits what gathered
	// so far; the others find theirs done when they get it in turn.
	s.commitMu.Lock()
	select {
	case <-r.done:
	default:
		s.commitPending()
	}
	s.commitMu.Unlock()
	<-r.done
	if r.err == nil && !expiry {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return r.ev, r.err
}

// commitPending commits the gathered requests (as many as one etcd
// transaction holds) and completes them. The caller holds commitMu.
func (s *Store) commitPending() {
	s.gather.Lock()
	group := s.pending
	s.pending = nil
	s.gather.Unlock()
	for attempt := 0; ; attempt++ {
		b := s.build(group)
		if len(b.rest) > 0 {
			// What did not fit goes back, first in line.
			s.gather.Lock()
			s.pending = append(b.rest, s.pending...)
			s.gather.Unlock()
			group = group[:len(group)-len(b.rest)]
		}
		if b.ops == nil {
			s.finish(group, nil)
			return
		}
		if len(b.ids) > 0 {
			lease, err := s.leaseForIDs()
			if err != nil {
				s.down.failed(err)
				s.finish(group, fmt.Errorf("etcd: a lease for remembered ids: %w", err))
				return
			}
			for _, id := range b.ids {
				b.ops = append(b.ops, clientv3.OpPut(s.key(idKey(id)), string(binary.BigEndian.AppendUint64(nil, uint64(id.Signed))), clientv3.WithLease(lease)))
			}
		}
		ctx, cancel := s.reqCtx()
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(s.key(keySerial)), "=", b.serialRev)).
			Then(b.ops...).
			Commit()
		cancel()
		if err != nil {
			s.down.failed(err)
			s.finish(group, fmt.Errorf("etcd: committing: %w", err))
			return
		}
		s.down.ok()
		if resp.Succeeded {
			s.waitApplied(resp.Header.Revision)
			s.finish(group, nil)
			return
		}
		// Another instance committed first: run the group again on the
		// copy once it has that commit.
		if attempt == maxRetries || s.ctx.Err() != nil {
			s.finish(group, errors.New("etcdstore: could not commit: every attempt lost to another instance's commit"))
			return
		}
		s.waitApplied(resp.Header.Revision)
	}
}

// finish completes the requests of a group: those that failed on their
// own keep their error, the others get err.
func (s *Store) finish(group []*request, err error) {
	for _, r := range group {
		if r.err == nil && err != nil {
			r.err, r.ev = err, store.Event{}
		}
		close(r.done)
	}
}

// built is a group run on the copy: the etcd operations that commit it,
// and the requests that did not fit.
type built struct {
	ops       []clientv3.Op
	ids       []memzone.SeenID // remembered: put with a lease, outside the lock
	serialRev int64
	rest      []*request
}

// build runs the group's transactions, in order, on the copy: each sees
// the ones before it, and one that fails is undone and changes nothing.
// Then it undoes them all, so that the copy holds only what etcd
// committed, and returns what to commit.
func (s *Store) build(group []*request) built {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b built
	b.serialRev = s.serialRev
	serial0 := s.z.Serial()
	now := s.opts.Now()
	var txs []*memzone.Tx
	names := make(map[string][]byte)
	var order []string
	var ids []memzone.SeenID
	var evs []store.Event
	bytes := 0
	for i, r := range group {
		r.err, r.ev = nil, store.Event{}
		t := memzone.NewTx(s.z, now)
		if err := r.fn(t); err != nil {
			t.Undo()
			r.err = err
			continue
		}
		ev, err := t.Finish()
		if err != nil {
			t.Undo()
			r.err = err
			continue
		}
		ev.Expired = r.expiry
		// Bounds: this transaction's names and ids, on top of the group's.
		newNames, size := 0, 0
		for _, tc := range t.Touched() {
			if _, ok := names[tc.Key]; !ok {
				newNames++
			}
			size += 2 * len(tc.NewPacked) // the records, and again in the log
		}
		if len(order)+newNames+len(ids)+len(t.Remembered())+2 > maxGroupOps || bytes+size > maxGroupBytes {
			t.Undo()
			s.z.SetSerial(ev.Serial - 1)
			if len(txs) == 0 { // alone, and still too large
				r.err = errTooLarge
				continue
			}
			b.rest = group[i:]
			break
		}
		bytes += size
		r.ev = ev
		txs = append(txs, t)
		for _, tc := range t.Touched() {
			if _, ok := names[tc.Key]; !ok {
				order = append(order, tc.Key)
			}
			names[tc.Key] = tc.NewPacked
		}
		ids = append(ids, t.Remembered()...)
		if len(ev.Changes) > 0 {
			evs = append(evs, ev)
		}
	}
	serial := s.z.Serial()
	for i := len(txs) - 1; i >= 0; i-- {
		txs[i].Undo()
	}
	s.z.SetSerial(serial0)
	if len(order) == 0 && len(ids) == 0 {
		return b // nothing to commit: reads only, or failures
	}
	for _, k := range order {
		if v := names[k]; len(v) == 0 {
			b.ops = append(b.ops, clientv3.OpDelete(s.key(dirNames+k)))
		} else {
			b.ops = append(b.ops, clientv3.OpPut(s.key(dirNames+k), string(v)))
		}
	}
	b.ops = append(b.ops, clientv3.OpPut(s.key(keySerial), string(binary.BigEndian.AppendUint32(nil, serial))))
	if len(evs) > 0 {
		log, err := encodeEvents(evs)
		if err != nil {
			for _, r := range group {
				if r.err == nil {
					r.err = err
				}
			}
			b.ops = nil
			return b
		}
		b.ops = append(b.ops, clientv3.OpPut(s.key(keyLog), string(log)))
	}
	b.ids = ids
	return b
}

// leaseForIDs returns the etcd lease to put remembered ids on: a new one
// each minute, each lasting the replay window and two minutes more, so
// that etcd drops every id once it can no longer matter.
func (s *Store) leaseForIDs() (clientv3.LeaseID, error) {
	l := &s.idLease
	l.Lock()
	defer l.Unlock()
	if l.id != 0 && time.Since(l.granted) < time.Minute {
		return l.id, nil
	}
	ctx, cancel := s.reqCtx()
	defer cancel()
	resp, err := s.cli.Grant(ctx, int64((store.ReplayWindow+2*time.Minute)/time.Second))
	if err != nil {
		return 0, err
	}
	l.id, l.granted = resp.ID, time.Now()
	return l.id, nil
}

// Sweep deletes every record whose lease has ended, as one commit that
// looks to subscribers like an UPDATE deleting them, and returns how many
// it deleted. Every instance sweeps; whichever commits first deletes, the
// others find nothing left.
func (s *Store) Sweep() (int, error) {
	s.mu.RLock()
	due := len(s.z.Due(s.opts.Now())) > 0
	s.mu.RUnlock()
	if !due {
		return 0, nil
	}
	deleted := 0
	_, err := s.update(true, func(st store.Tx) (err error) {
		deleted, err = st.(*memzone.Tx).SweepExpired()
		return err
	})
	return deleted, err
}

// sweepLoop sweeps until the store closes (memzone.RunSweeper).
func (s *Store) sweepLoop() {
	defer s.loops.Done()
	memzone.RunSweeper(s.ctx.Done(), s.wake, s.opts.SweepInterval, s.opts.Now, s.nextExpiry, func() { s.Sweep() })
}

// nextExpiry is the copy's earliest lease end.
func (s *Store) nextExpiry() (time.Time, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.z.NextExpiry()
}
