package etcdstore

import (
	"context"
	"encoding/binary"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// watch keeps the copy up to date with every commit under the prefix, and
// publishes each commit's events, in revision order. When the watch
// breaks (etcd lost) it starts again from the last revision applied, so
// nothing is missed; if etcd compacted those revisions meanwhile, it reads
// the zone again and ends the subscriptions with store.ErrLagged.
func (s *Store) watch() {
	defer s.loops.Done()
	backoff := 50 * time.Millisecond
	for s.ctx.Err() == nil {
		s.mu.RLock()
		from := s.rev + 1
		s.mu.RUnlock()
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
		s.watchMu.Lock()
		s.watchCancel = cancel
		s.watchMu.Unlock()
		wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
		restarted := false
		for resp := range wch {
			if resp.CompactRevision != 0 {
				s.opts.Logf("etcd compacted revisions this instance had not seen: reading the zone again")
				s.reload()
				break
			}
			if err := resp.Err(); err != nil {
				if restarted = wctx.Err() != nil && s.ctx.Err() == nil; !restarted {
					s.down.failed(err)
				}
				break
			}
			backoff = 50 * time.Millisecond
			s.apply(resp.Events)
		}
		restarted = restarted || (wctx.Err() != nil && s.ctx.Err() == nil)
		cancel()
		if restarted {
			continue // restartWatch: at once
		}
		select {
		case <-s.ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// restartWatch ends the current watch; the loop starts a new one from
// the last revision applied.
func (s *Store) restartWatch() {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	if s.watchCancel != nil {
		s.watchCancel()
	}
}

// apply applies watched events, one revision at a time, and publishes the
// events each commit logged.
func (s *Store) apply(events []*clientv3.Event) {
	for len(events) > 0 {
		rev := events[0].Kv.ModRevision
		n := 1
		for n < len(events) && events[n].Kv.ModRevision == rev {
			n++
		}
		s.applyRevision(rev, events[:n])
		events = events[n:]
	}
}

func (s *Store) applyRevision(rev int64, events []*clientv3.Event) {
	var logged []store.Event
	s.mu.Lock()
	for _, ev := range events {
		k := string(ev.Kv.Key[len(s.prefix):])
		del := ev.Type == clientv3.EventTypeDelete
		switch {
		case strings.HasPrefix(k, dirNames):
			var v []byte
			if !del {
				v = ev.Kv.Value
			}
			if err := setName(s.z, k[len(dirNames):], v); err != nil {
				s.opts.Logf("etcd: ignoring %s: %v", ev.Kv.Key, err)
			}
		case k == keySerial && !del && len(ev.Kv.Value) == 4:
			s.z.SetSerial(binary.BigEndian.Uint32(ev.Kv.Value))
			s.serialRev = rev
		case k == keyLog && !del:
			evs, err := decodeEvents(ev.Kv.Value)
			if err != nil {
				s.opts.Logf("etcd: ignoring the event log at revision %d: %v", rev, err)
			}
			logged = append(logged, evs...)
		case strings.HasPrefix(k, dirUsers):
			logged = append(logged, s.applyUser(ev, k[len(dirUsers):]))
		case strings.HasPrefix(k, dirIDs) && !del:
			// A deleted id is one whose lease etcd ended: the copy
			// forgets it by the clock anyway.
			if id, ok := parseID(k[len(dirIDs):], ev.Kv.Value); ok && !s.z.Seen().Has(id.ID) {
				s.z.Seen().Forget(s.opts.Now().Add(-store.ReplayWindow).Unix())
				s.z.Seen().Add(id)
			}
		}
	}
	s.rev = rev
	s.applied.Broadcast()
	s.mu.Unlock()
	for _, ev := range logged {
		s.feed.Publish(ev)
	}
}

// reload reads the zone again, after the watch lost revisions, and tells
// the subscribers that they missed events.
func (s *Store) reload() {
	fresh := &Store{cli: s.cli, prefix: s.prefix, opts: s.opts, ctx: s.ctx}
	for s.ctx.Err() == nil {
		if err := fresh.load(s.z.Apex()); err == nil {
			break
		}
		time.Sleep(time.Second)
	}
	s.mu.Lock()
	if fresh.z != nil {
		s.z, s.users, s.rev, s.serialRev = fresh.z, fresh.users, fresh.rev, fresh.serialRev
	}
	s.applied.Broadcast()
	s.mu.Unlock()
	s.feed.Lag()
}
