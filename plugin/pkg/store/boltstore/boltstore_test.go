package boltstore

import (
	"errors"
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

func TestSetLookupExists(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, filepath.Join(t.TempDir(), "z.db"), c)
	name := "_autotunnel._udp.laptop.alice.members.example.com."
	set(t, s, name, store.Record{RR: rr(t, name+" 60 IN SRV 0 0 4500 autotunnel-1.alice.members.example.com.")})

	rrs, exists, err := s.Lookup("_AutoTunnel._UDP.Laptop.alice.members.example.com.")
	if err != nil || !exists || len(rrs) != 1 {
		t.Fatalf("Lookup of the name in another case: %v %v %v", rrs, exists, err)
	}
	// An empty non-terminal exists but has no records.
	rrs, exists, _ = s.Lookup("_udp.laptop.alice.members.example.com.")
	if !exists || len(rrs) != 0 {
		t.Fatalf("empty non-terminal: exists=%v rrs=%v, want exists and no records", exists, rrs)
	}
	// A sibling that shares a prefix of characters does not exist.
	if _, exists, _ = s.Lookup("laptop.alicia.members.example.com."); exists {
		t.Fatal("a name nobody added exists")
	}
	if _, exists, _ = s.Lookup("aptop.alice.members.example.com."); exists {
		t.Fatal("a name nobody added exists")
	}
}

func TestSerialAndEvents(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, filepath.Join(t.TempDir(), "z.db"), c)
	sub := s.Subscribe(8)
	defer sub.Close()
	s0, _ := s.Serial()
	if s0 != 1_800_000_000 {
		t.Fatalf("first serial %d, want the clock's %d", s0, 1_800_000_000)
	}
	name := "laptop.alice.members.example.com."
	a := store.Record{RR: rr(t, name+" 60 IN AAAA fd00::1"), Expires: c.Now().Add(time.Hour)}
	ev := set(t, s, name, a)
	if ev.Serial != s0+1 || len(ev.Changes) != 1 || len(ev.Changes[0].Added) != 1 || len(ev.Changes[0].Removed) != 0 {
		t.Fatalf("add: %+v", ev)
	}
	got := <-sub.C
	if got.Serial != ev.Serial || got.Changes[0].Name != name {
		t.Fatalf("feed gave %+v, want %+v", got, ev)
	}
	// The same record with a later lease is a renewal: no change, no
	// serial bump, no event.
	a.Expires = a.Expires.Add(time.Hour)
	if ev := set(t, s, name, a); len(ev.Changes) != 0 || ev.Serial != s0+1 {
		t.Fatalf("renewal changed the zone: %+v", ev)
	}
	// A new TTL is a change: the record is removed and added.
	b := store.Record{RR: rr(t, name+" 120 IN AAAA fd00::1")}
	ev = set(t, s, name, b)
	if ev.Serial != s0+2 || len(ev.Changes[0].Added) != 1 || len(ev.Changes[0].Removed) != 1 {
		t.Fatalf("TTL change: %+v", ev)
	}
	if got := <-sub.C; got.Serial != s0+2 {
		t.Fatalf("feed: got serial %d, want %d", got.Serial, s0+2)
	}
	select {
	case ev := <-sub.C:
		t.Fatalf("renewal produced an event: %+v", ev)
	default:
	}
}

func TestFailedUpdateChangesNothing(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, filepath.Join(t.TempDir(), "z.db"), c)
	name := "host.alice.members.example.com."
	s0, _ := s.Serial()
	boom := errors.New("boom")
	_, err := s.Update(func(tx store.Tx) error {
		if err := tx.Set(name, []store.Record{{RR: rr(t, name+" 60 IN A 192.0.2.1")}}); err != nil {
			return err
		}
		if got, _ := tx.Get(name); len(got) != 1 {
			t.Errorf("a transaction does not see its own write: %v", got)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want the function's error", err)
	}
	if _, exists, _ := s.Lookup(name); exists {
		t.Fatal("a failed transaction left its record")
	}
	if s1, _ := s.Serial(); s1 != s0 {
		t.Fatalf("a failed transaction moved the serial %d -> %d", s0, s1)
	}
}

func TestOutsideZoneRefused(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, filepath.Join(t.TempDir(), "z.db"), c)
	_, err := s.Update(func(tx store.Tx) error {
		return tx.Set("evil.example.com.", []store.Record{{RR: rr(t, "evil.example.com. 60 IN A 192.0.2.1")}})
	})
	if err == nil {
		t.Fatal("a name outside the zone was written")
	}
	_, err = s.Update(func(tx store.Tx) error {
		return tx.Set("a.members.example.com.", []store.Record{{RR: rr(t, "b.members.example.com. 60 IN A 192.0.2.1")}})
	})
	if err == nil {
		t.Fatal("a record was written at a name other than its owner")
	}
}

func TestUsage(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, filepath.Join(t.TempDir(), "z.db"), c)
	r1 := rr(t, "a.alice.members.example.com. 60 IN A 192.0.2.1")
	r2 := rr(t, "b.c.alice.members.example.com. 60 IN TXT \"hello\"")
	set(t, s, "a.alice.members.example.com.", store.Record{RR: r1})
	set(t, s, "b.c.alice.members.example.com.", store.Record{RR: r2})
	set(t, s, "x.bob.members.example.com.", store.Record{RR: rr(t, "x.bob.members.example.com. 60 IN A 192.0.2.9")})
	var u store.Usage
	s.Update(func(tx store.Tx) error {
		u, _ = tx.Usage("alice.members.example.com.")
		return nil
	})
	want := store.Usage{Records: 2, Bytes: dns.Len(r1) + dns.Len(r2)}
	if u != want {
		t.Fatalf("usage %+v, want %+v", u, want)
	}
	// Pending changes count inside the transaction.
	s.Update(func(tx store.Tx) error {
		tx.Set("a.alice.members.example.com.", nil)
		u, _ = tx.Usage("alice.members.example.com.")
		return errors.New("roll back")
	})
	if u.Records != 1 {
		t.Fatalf("usage inside the transaction %+v, want 1 record", u)
	}
}

func TestExpirySweepsLikeADelete(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	path := filepath.Join(t.TempDir(), "z.db")
	s := open(t, path, c)
	sub := s.Subscribe(8)
	name := "laptop.alice.members.example.com."
	short := store.Record{RR: rr(t, name+" 60 IN AAAA fd00::1"), Expires: c.Now().Add(30 * time.Minute)}
	long := store.Record{RR: rr(t, name+" 60 IN TXT \"x\""), Expires: c.Now().Add(2 * time.Hour)}
	forever := store.Record{RR: rr(t, name+" 60 IN A 192.0.2.1")}
	set(t, s, name, short, long, forever)
	<-sub.C
	serial, _ := s.Serial()

	c.Add(30 * time.Minute)
	// Expired but not yet swept: never served.
	if rrs, _, _ := s.Lookup(name); len(rrs) != 2 {
		t.Fatalf("an expired record is still served: %v", rrs)
	}
	n, err := s.Sweep()
	if err != nil || n != 1 {
		t.Fatalf("Sweep deleted %d records (%v), want 1", n, err)
	}
	ev := <-sub.C
	if !ev.Expired || ev.Serial != serial+1 || len(ev.Changes) != 1 || len(ev.Changes[0].Removed) != 1 || ev.Changes[0].Removed[0].Header().Rrtype != dns.TypeAAAA {
		t.Fatalf("expiry event %+v, want the AAAA removed with a serial bump", ev)
	}
	if n, _ := s.Sweep(); n != 0 {
		t.Fatalf("a second sweep deleted %d records", n)
	}

	// Expiry across a restart: the TXT's lease ends while the store is closed.
	s.Close()
	c.Add(2 * time.Hour)
	s = open(t, path, c)
	rrs, _, _ := s.Lookup(name)
	if len(rrs) != 1 || rrs[0].Header().Rrtype != dns.TypeA {
		t.Fatalf("after a restart past the lease: %v, want only the A without lease", rrs)
	}
	if due := s.z.Due(c.Now().Add(1000 * time.Hour)); len(due) != 0 {
		t.Fatalf("lease index still lists %v", due)
	}
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

func TestReopenKeepsData(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	path := filepath.Join(t.TempDir(), "z.db")
	s := open(t, path, c)
	set(t, s, "h.alice.members.example.com.", store.Record{RR: rr(t, "h.alice.members.example.com. 60 IN A 192.0.2.1")})
	serial, _ := s.Serial()
	s.Close()
	s = open(t, path, c)
	if got, _ := s.Serial(); got != serial {
		t.Fatalf("serial %d after reopening, want %d", got, serial)
	}
	if rrs, _, _ := s.Lookup("h.alice.members.example.com."); len(rrs) != 1 {
		t.Fatalf("record lost on reopening: %v", rrs)
	}
	s.Close()
	if _, err := Open(path, "other.example.", Options{}); err == nil {
		t.Fatal("a store for another zone opened")
	}
}

func TestFeedDropsLaggards(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, filepath.Join(t.TempDir(), "z.db"), c)
	slow := s.Subscribe(1)
	fast := s.Subscribe(16)
	for i := range 3 {
		name := "h.alice.members.example.com."
		set(t, s, name, store.Record{RR: rr(t, name+" 60 IN A 192.0.2."+string(rune('1'+i)))})
	}
	n := 0
	for range slow.C {
		n++
	}
	if n != 1 || !errors.Is(slow.Err(), store.ErrLagged) {
		t.Fatalf("slow subscriber got %d events and %v, want 1 and ErrLagged", n, slow.Err())
	}
	if len(fast.C) != 3 || fast.Err() != nil {
		t.Fatalf("fast subscriber has %d events, err %v; want 3, nil", len(fast.C), fast.Err())
	}
	s.Close()
	if _, ok := <-fast.C; !ok {
		t.Fatal("queued events are lost on close")
	}
	for range fast.C {
	}
	if !errors.Is(fast.Err(), store.ErrClosed) {
		t.Fatalf("after close: %v", fast.Err())
	}
}

// TestRemember: an id is fresh once, stays remembered across a reopen,
// and is dropped once its time signed is past the replay window; a
// transaction that fails remembers nothing.
func TestRemember(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "z.db")
	s := open(t, path, c)
	remember := func(s *Store, id string, signed time.Time) bool {
		t.Helper()
		var fresh bool
		if _, err := s.Update(func(tx store.Tx) (err error) { fresh, err = tx.Remember([]byte(id), signed); return }); err != nil {
			t.Fatal(err)
		}
		return fresh
	}
	signed := c.Now()
	if !remember(s, "a", signed) || remember(s, "a", signed) {
		t.Fatal("the same id twice: want fresh, then not")
	}
	if !remember(s, "b", signed) || !remember(s, "a", signed.Add(time.Second)) {
		t.Fatal("another id, or the same one at another time: want fresh")
	}
	s.Update(func(tx store.Tx) error { tx.Remember([]byte("rolled back"), signed); return errors.New("fail") })
	s.Close()
	s = open(t, path, c)
	if remember(s, "a", signed) {
		t.Error("forgotten across a reopen")
	}
	if !remember(s, "rolled back", signed) {
		t.Error("a failed transaction remembered its id")
	}
	c.Add(store.ReplayWindow + 2*time.Second) // past every id above, the latest signed a second later
	remember(s, "c", c.Now())                 // prunes
	if n := s.z.Seen().Len(); n != 1 {
		t.Errorf("%d ids kept past the window, want 1 (the new one)", n)
	}
	// And in the file, once checkpointed by Close.
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
