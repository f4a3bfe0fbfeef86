package boltstore

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/memzone"
)

// checkpoint is what the file must take to catch up with the log up to
// record through: the names changed since the last checkpoint and the ids
// remembered since.
type checkpoint struct {
	through uint64
	serial  uint32
	dirty   map[string][]byte // packed records by name key; nil: deleted
	fresh   []memzone.SeenID
	// segment is the first record of the log segment started with this
	// checkpoint: once it is in the file, the segments before go.
	segment uint64
}

// snapshotLocked takes what changed since the last checkpoint, up to the
// last transaction applied. The caller holds s.mu, and makes sure that
// the file is written only once the log holds all of it.
func (s *Store) snapshotLocked() *checkpoint {
	dirty, fresh := s.z.TakeChanges()
	return &checkpoint{through: s.seq, serial: s.z.Serial(), dirty: dirty, fresh: fresh}
}

// checkpointLoop writes the checkpoints that commit hands it, in order,
// while the log goes on in a new segment.
func (s *Store) checkpointLoop() {
	defer s.loops.Done()
	for c := range s.checkpoints {
		if err := s.writeCheckpoint(c); err != nil {
			// Keep the log, and what this checkpoint missed for the next
			// one: names changed again since hold newer records already.
			s.mu.Lock()
			s.z.PutBackChanges(c.dirty, c.fresh)
			s.mu.Unlock()
			continue
		}
		s.log.removeBefore(c.segment)
	}
}

// writeCheckpoint brings the file up to c in one bbolt transaction.
func (s *Store) writeCheckpoint(c *checkpoint) error {
	return s.db.Update(func(btx *bolt.Tx) error {
		names := btx.Bucket(bucketNames)
		// In key order: bbolt then fills pages one after another instead
		// of splitting them at random, several times faster.
		for _, k := range slices.Sorted(maps.Keys(c.dirty)) {
			var err error
			if v := c.dirty[k]; len(v) == 0 {
				err = names.Delete([]byte(k))
			} else {
				err = names.Put([]byte(k), v)
			}
			if err != nil {
				return err
			}
		}
		// Ids are keyed by their time signed first, so those past the
		// replay window are a prefix of the bucket.
		signed := btx.Bucket(bucketSigned)
		cutoff := s.opts.Now().Add(-store.ReplayWindow).Unix()
		cur := signed.Cursor()
		for k, _ := cur.First(); len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) < cutoff; k, _ = cur.First() {
			if err := cur.Delete(); err != nil {
				return err
			}
		}
		slices.SortFunc(c.fresh, func(a, b memzone.SeenID) int {
			return cmp.Or(cmp.Compare(a.Signed, b.Signed), bytes.Compare(a.ID[:], b.ID[:]))
		})
		for _, id := range c.fresh {
			if id.Signed < cutoff {
				continue
			}
			k := append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+memzone.IDLen), uint64(id.Signed)), id.ID[:]...)
			if err := signed.Put(k, []byte{1}); err != nil {
				return err
			}
		}
		meta := btx.Bucket(bucketMeta)
		if err := meta.Put(metaSerial, binary.BigEndian.AppendUint32(nil, c.serial)); err != nil {
			return err
		}
		return meta.Put(metaApplied, binary.BigEndian.AppendUint64(nil, c.through))
	})
}
