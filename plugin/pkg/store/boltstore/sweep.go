package boltstore

import (
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/memzone"
)

// Sweep deletes every record whose lease has ended, as one transaction
// that looks to subscribers like an UPDATE deleting them. It returns how
// many records it deleted. The store sweeps by itself; Sweep is for tests
// and for Open.
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

// sweepLoop sweeps when the earliest lease ends, so that the delete (and
// its serial bump and event) comes as the record stops being served, and at
// least every interval in case the clock jumped.
func (s *Store) sweepLoop(every time.Duration) {
	defer s.loops.Done()
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
		s.mu.RLock()
		next, ok := s.z.NextExpiry()
		s.mu.RUnlock()
		if ok {
			wait = min(wait, max(next.Sub(s.opts.Now()), 0))
		}
		t.Reset(wait)
	}
}
