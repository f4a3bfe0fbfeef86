package boltstore

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	bolt "go.etcd.io/bbolt"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

const zone = "members.example.com."

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func open(t *testing.T, path string, c *clock) *Store {
	t.Helper()
	s, err := Open(path, zone, Options{Now: c.Now, ManualSweep: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rr(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func set(t *testing.T, s *Store, name string, recs ...store.Record) store.Event {
	t.Helper()
	ev, err := s.Update(func(tx store.Tx) error { return tx.Set(name, recs) })
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestSweeperRunsByItself(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "z.db"), zone, Options{SweepInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sub := s.Subscribe(8)
	name := "h.alice.members.example.com."
	set(t, s, name, store.Record{RR: rr(t, name+" 60 IN A 192.0.2.1"), Expires: time.Now().Add(50 * time.Millisecond)})
	<-sub.C
	select {
	case ev := <-sub.C:
		if !ev.Expired {
			t.Fatalf("got %+v, want the expiry", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the sweeper did not delete an expired record")
	}
}

// TestRememberPrunes: ids signed before the replay window are dropped, in
// memory and, once checkpointed, in the file (what the conformance tests
// cannot see).
func TestRememberPrunes(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "z.db")
	s := open(t, path, c)
	remember := func(id string, signed time.Time) {
		t.Helper()
		if _, err := s.Update(func(tx store.Tx) (err error) { _, err = tx.Remember([]byte(id), signed); return }); err != nil {
			t.Fatal(err)
		}
	}
	remember("a", c.Now())
	remember("b", c.Now().Add(time.Second))
	c.Add(store.ReplayWindow + 2*time.Second) // past both
	remember("c", c.Now())                    // prunes
	if n := s.z.Seen().Len(); n != 1 {
		t.Errorf("%d ids kept past the window, want 1 (the new one)", n)
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(btx *bolt.Tx) error {
		if n := btx.Bucket(bucketSigned).Stats().KeyN; n != 1 {
			t.Errorf("%d ids in the file past the window, want 1", n)
		}
		return nil
	})
}
