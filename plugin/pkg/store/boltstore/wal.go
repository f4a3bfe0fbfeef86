package boltstore

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The write-ahead log makes a commit durable with one write and one
// fdatasync, shared by every transaction of a group.
//
// It is a directory of segment files named by the sequence number of the
// first record they may hold (16 hex digits, ".wal"). A segment is filled
// with zeros when it is made and synced, so that an append overwrites
// allocated blocks and fdatasync has no file size or extent to journal:
// on the disks measured that is close to twice as many syncs per second
// as appending to a growing file. A spare segment is made ahead of need.
//
// Each write is one frame, holding the records of one group:
//
//	length u32 ‖ crc32c(payload) u32 ‖ payload
//	payload = (record length u32 ‖ record)…
//
// and each record begins with its sequence number. Reading stops at a
// zero length (the untouched rest of a segment) or a frame whose checksum
// fails: a write torn by a crash, whose records nobody was told were
// taken. A frame is written only once the one before it is synced, so a
// bad frame followed by a good one is no torn write but damage to records
// that were acknowledged, and the log is refused.
type wal struct {
	dir    string
	size   int64 // of the next segment: the first is small, each next twice as large...
	max    int64 // ...up to this
	noSync bool

	f     *os.File // the segment being written
	first uint64   // its first sequence number
	off   int64    // where the next record goes
	cap   int64    // its size

	spare chan spareResult // a zeroed segment being made, if any
}

type spareResult struct {
	path string
	size int64
	err  error
}

const (
	frameHeader = 8
	spareName   = "spare.tmp"
	// firstSegment is the size of a log's first segment. A store that
	// takes few updates never writes more; a busy one grows its segments,
	// so that checkpoints come every few hundred thousand updates.
	firstSegment = 1 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// newFrame starts a frame for records to be appended to with addRecord.
func newFrame() []byte { return make([]byte, frameHeader, 4096) }

// addRecord appends rec to the frame buf.
func addRecord(buf, rec []byte) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(rec)))
	return append(buf, rec...)
}

// sealFrame fills in the frame's header once its records are in.
func sealFrame(buf []byte) []byte {
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-frameHeader))
	binary.BigEndian.PutUint32(buf[4:], crc32.Checksum(buf[frameHeader:], crcTable))
	return buf
}

// frameRecords splits a frame's payload into its records.
func frameRecords(payload []byte) ([][]byte, error) {
	var recs [][]byte
	for len(payload) > 0 {
		if len(payload) < 4 {
			return nil, errLogCorrupt
		}
		n := binary.BigEndian.Uint32(payload)
		if n < 8 || uint64(n) > uint64(len(payload)-4) {
			return nil, errLogCorrupt
		}
		recs = append(recs, payload[4:4+n])
		payload = payload[4+n:]
	}
	return recs, nil
}

// segments lists the log's segments by first sequence number, ascending.
func segments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var firsts []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".wal")
		if !ok || len(name) != 16 {
			continue
		}
		n, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		firsts = append(firsts, n)
	}
	slices.Sort(firsts)
	return firsts, nil
}

func segmentPath(dir string, first uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x.wal", first))
}

// errLogCorrupt is a log that lost a record it acknowledged: a bad frame
// followed by good ones, or a gap in the sequence. The store refuses to
// open rather than serve a zone missing updates it confirmed.
var errLogCorrupt = errors.New("store: the write-ahead log is corrupt")

// replay calls apply for each record after seq after, in order, and
// returns the last sequence number seen.
func replay(dir string, after uint64, apply func(record []byte) error) (last uint64, err error) {
	firsts, err := segments(dir)
	if err != nil {
		return 0, err
	}
	last = after
	torn := ""
	for _, first := range firsts {
		path := segmentPath(dir, first)
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		for len(b) >= frameHeader {
			n := int64(binary.BigEndian.Uint32(b))
			if n == 0 {
				break
			}
			if n > int64(len(b)-frameHeader) {
				torn = cmp.Or(torn, path)
				break // no telling where a next frame would start
			}
			sum, payload := binary.BigEndian.Uint32(b[4:]), b[frameHeader:frameHeader+n]
			b = b[frameHeader+n:]
			recs, err := frameRecords(payload)
			if err != nil || crc32.Checksum(payload, crcTable) != sum {
				torn = cmp.Or(torn, path)
				continue
			}
			if torn != "" {
				return 0, fmt.Errorf("%w: %s has a damaged frame, and good ones after it in %s", errLogCorrupt, torn, path)
			}
			for _, rec := range recs {
				switch seq := binary.BigEndian.Uint64(rec); {
				case seq <= last:
					continue // in the checkpoint already
				case seq != last+1:
					return 0, fmt.Errorf("%w: record %d follows %d in %s", errLogCorrupt, seq, last, path)
				default:
					if err := apply(rec); err != nil {
						return 0, fmt.Errorf("%w: record %d in %s: %v", errLogCorrupt, seq, path, err)
					}
					last = seq
				}
			}
		}
	}
	return last, nil
}

// openWAL starts a log in dir whose first record will be number first.
// Segments left in dir must have been replayed and checkpointed: they are
// removed.
func openWAL(dir string, maxSize int64, noSync bool, first uint64) (*wal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	w := &wal{dir: dir, size: min(firstSegment, maxSize), max: maxSize, noSync: noSync}
	if err := w.removeBefore(^uint64(0)); err != nil {
		return nil, err
	}
	if err := w.rotate(first, 0); err != nil {
		return nil, err
	}
	return w, nil
}

// fits reports whether n more octets fit in the current segment.
func (w *wal) fits(n int) bool { return w.off+int64(n) <= w.cap }

// rotate closes the current segment and starts one for records from
// first on, with room for at least need octets.
func (w *wal) rotate(first uint64, need int) error {
	path, size := "", max(w.size, int64(need))
	if w.spare != nil {
		r := <-w.spare
		w.spare = nil
		if r.err == nil && int64(need) <= r.size {
			path, size = r.path, r.size
		}
	}
	if path == "" {
		p, err := w.makeSegment(size)
		if err != nil {
			return err
		}
		path = p
	}
	seg := segmentPath(w.dir, first)
	if err := os.Rename(path, seg); err != nil {
		return err
	}
	if err := w.syncDir(); err != nil {
		return err
	}
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if w.f != nil {
		w.f.Close()
	}
	w.f, w.first, w.off, w.cap = f, first, 0, size
	// Make the next one, twice as large up to the most, while this fills.
	w.size = min(w.size*2, w.max)
	w.spare = make(chan spareResult, 1)
	go func(c chan<- spareResult, size int64) {
		p, err := w.makeSegment(size)
		c <- spareResult{p, size, err}
	}(w.spare, w.size)
	return nil
}

// makeSegment writes a zeroed file of size octets, synced, under the
// spare name, and returns its path.
func (w *wal) makeSegment(size int64) (string, error) {
	path := filepath.Join(w.dir, spareName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	zeros := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(zeros)) {
		if _, err := f.Write(zeros[:min(left, int64(len(zeros)))]); err != nil {
			return "", err
		}
	}
	if !w.noSync {
		if err := f.Sync(); err != nil {
			return "", err
		}
	}
	return path, nil
}

// append writes a sealed frame at the end of the current segment and
// makes it durable. The caller checked that it fits (or rotated).
func (w *wal) append(buf []byte) error {
	if _, err := w.f.WriteAt(buf, w.off); err != nil {
		return err
	}
	w.off += int64(len(buf))
	if w.noSync {
		return nil
	}
	return fdatasync(w.f)
}

// removeBefore deletes the segments that start before sequence number
// first. Called with the first record of the current segment or an
// earlier one, it deletes segments whose records all come before: it
// reads only the directory, so the checkpointer calls it while commit
// writes on.
func (w *wal) removeBefore(first uint64) error {
	firsts, err := segments(w.dir)
	if err != nil {
		return err
	}
	removed := false
	for _, n := range firsts {
		if n >= first {
			continue
		}
		if err := os.Remove(segmentPath(w.dir, n)); err != nil {
			return err
		}
		removed = true
	}
	if removed {
		return w.syncDir()
	}
	return nil
}

func (w *wal) syncDir() error {
	if w.noSync {
		return nil
	}
	d, err := os.Open(w.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// close closes the current segment and throws the spare away.
func (w *wal) close() error {
	if w.spare != nil {
		<-w.spare
		os.Remove(filepath.Join(w.dir, spareName))
	}
	if w.f == nil {
		return nil
	}
	return w.f.Close()
}
