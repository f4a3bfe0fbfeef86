package boltstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/memzone"
)

// crash stops s the way kill -9 would leave it: no final checkpoint, the
// log as written. Whatever the checkpointer did before stays done.
func crash(t *testing.T, s *Store) {
	t.Helper()
	s.shutdown(false)
}

// TestFailedTransactionInAGroup: transactions that fail after writing are
// undone in memory, and leave the others of their group applied, in
// memory and after a crash.
func TestFailedTransactionInAGroup(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	path := filepath.Join(t.TempDir(), "z.db")
	s := open(t, path, c)
	boom := errors.New("boom")
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			name := fmt.Sprintf("h%d.alice.members.example.com.", i)
			_, err := s.Update(func(tx store.Tx) error {
				if err := tx.Set(name, []store.Record{{RR: rr(t, name+" 60 IN A 192.0.2.1")}}); err != nil {
					return err
				}
				if _, err := tx.Remember([]byte(name), c.Now()); err != nil {
					return err
				}
				if i%3 == 0 {
					return boom
				}
				return nil
			})
			if (err != nil) != (i%3 == 0) {
				t.Errorf("transaction %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	check := func(s *Store) {
		t.Helper()
		var u store.Usage
		s.Update(func(tx store.Tx) (err error) { u, err = tx.Usage("alice.members.example.com."); return })
		if u.Records != 66 {
			t.Errorf("usage %d records, want 66", u.Records)
		}
		for i := range 100 {
			name := fmt.Sprintf("h%d.alice.members.example.com.", i)
			rrs, _, _ := s.Lookup(name)
			if len(rrs) != map[bool]int{true: 0, false: 1}[i%3 == 0] {
				t.Errorf("%s holds %v", name, rrs)
			}
			var fresh bool
			s.Update(func(tx store.Tx) (err error) {
				fresh, err = tx.Remember([]byte(name), c.Now())
				return errors.New("look only")
			})
			if fresh != (i%3 == 0) {
				t.Errorf("%s: id remembered %v, want %v", name, !fresh, i%3 != 0)
			}
		}
	}
	check(s)
	crash(t, s)
	check(open(t, path, c))
}

// TestCrashKeepsEveryCommit: whatever Update acknowledged is there after a
// crash, across log segments and the checkpoints they trigger, and a torn
// record at the end of the log (a write the crash cut) is dropped.
func TestCrashKeepsEveryCommit(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	path := filepath.Join(t.TempDir(), "z.db")
	opts := Options{Now: c.Now, ManualSweep: true, SegmentSize: 4096}
	s, err := Open(path, zone, opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				name := fmt.Sprintf("h%d.u%d.members.example.com.", i, i%7)
				if _, err := s.Update(func(tx store.Tx) error {
					return tx.Set(name, []store.Record{{RR: rr(t, name+" 60 IN A 192.0.2.1"), Expires: c.Now().Add(time.Hour)}})
				}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// Delete some, so that replay and checkpoint both see deletions.
	for i := 0; i < n; i += 10 {
		name := fmt.Sprintf("h%d.u%d.members.example.com.", i, i%7)
		set(t, s, name)
	}
	serial, _ := s.Serial()
	segs, _ := segments(path + ".wal")
	if len(segs) > 3 {
		t.Errorf("%d log segments kept: checkpoints do not remove them", len(segs))
	}
	last := s.log.first
	crash(t, s)

	// A torn record after the last one.
	f, err := os.OpenFile(segmentPath(path+".wal", last), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	b := make([]byte, st.Size())
	f.ReadAt(b, 0)
	end := 0
	for end+frameHeader <= len(b) && b[end]|b[end+1]|b[end+2]|b[end+3] != 0 {
		end += frameHeader + int(uint32(b[end])<<24|uint32(b[end+1])<<16|uint32(b[end+2])<<8|uint32(b[end+3]))
	}
	f.WriteAt([]byte{0, 0, 0, 40, 1, 2, 3, 4, 5, 6}, int64(end))
	f.Close()

	s = open(t, path, c)
	if got, _ := s.Serial(); got != serial {
		t.Errorf("serial %d after the crash, want %d", got, serial)
	}
	for i := range n {
		name := fmt.Sprintf("h%d.u%d.members.example.com.", i, i%7)
		rrs, _, _ := s.Lookup(name)
		if want := map[bool]int{true: 0, false: 1}[i%10 == 0]; len(rrs) != want {
			t.Fatalf("%s: %d records after the crash, want %d", name, len(rrs), want)
		}
	}
	var u store.Usage
	s.Update(func(tx store.Tx) (err error) { u, err = tx.Usage("u3.members.example.com."); return })
	if want := 0; u.Records == want {
		t.Errorf("usage of u3 lost in the crash")
	}
	if next, ok := s.z.NextExpiry(); !ok || !next.Equal(c.Now().Add(time.Hour)) {
		t.Errorf("lease index after the crash: %v %v", next, ok)
	}
}

// TestCorruptLogRefused: a record that fails its checksum with good ones
// after it is not a torn write but lost data; Open says so rather than
// serve a zone without them.
func TestCorruptLogRefused(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	path := filepath.Join(t.TempDir(), "z.db")
	s := open(t, path, c)
	for i := range 3 {
		name := fmt.Sprintf("h%d.alice.members.example.com.", i)
		set(t, s, name, store.Record{RR: rr(t, name+" 60 IN A 192.0.2.1")})
	}
	seg := segmentPath(path+".wal", s.log.first)
	crash(t, s)
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff}, frameHeader+20) // inside the first record
	f.Close()
	if _, err := Open(path, zone, Options{Now: c.Now, ManualSweep: true}); !errors.Is(err, errLogCorrupt) {
		t.Fatalf("Open of a corrupt log: %v, want errLogCorrupt", err)
	}
}

func FuzzDecodeTx(f *testing.F) {
	r, _ := dns.NewRR("h.alice.members.example.com. 60 IN A 192.0.2.1")
	k, _ := store.Key("h.alice.members.example.com.")
	packed, _ := memzone.EncodeRecords([]store.Record{{RR: r}})
	rec := encodeTx(7, 42, []*memzone.Touch{{Key: string(k), NewPacked: packed}}, []memzone.SeenID{{Signed: 5}})
	f.Add(rec)
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := decodeTx(b)
		if err != nil {
			return
		}
		order := make([]*memzone.Touch, len(l.keys))
		for i := range l.keys {
			order[i] = &memzone.Touch{Key: l.keys[i], NewPacked: l.packed[i]}
		}
		again := encodeTx(l.seq, l.serial, order, l.seen)
		if back, err := decodeTx(again); err != nil || back.seq != l.seq || len(back.keys) != len(l.keys) || len(back.seen) != len(l.seen) {
			t.Fatalf("round trip: %+v %v", back, err)
		}
	})
}
