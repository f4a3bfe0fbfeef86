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

// sweepLoop sweeps until the store stops (memzone.RunSweeper).
func (s *Store) sweepLoop(every time.Duration) {
	defer s.loops.Done()
	memzone.RunSweeper(s.stop, s.wake, every, s.opts.Now, s.nextExpiry, func() { s.Sweep() })
}

// nextExpiry is the zone's earliest lease end.
func (s *Store) nextExpiry() (time.Time, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.z.NextExpiry()
}
