package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// Engine is a store engine under the conformance tests of Run.
type Engine struct {
	// Place makes a fresh place for a store (a file, an etcd prefix) and
	// returns the function that opens the store there for zone on the
	// clock now, with no background sweeping. Opening again after Close
	// finds what was left; opening for another zone must fail.
	Place func(t *testing.T) (open func(zone string, now func() time.Time) (store.Store, error))
	// Sweep removes the records whose lease ended by the store's clock, as
	// its sweeper would, and says how many.
	Sweep func(s store.Store) (int, error)
}

// Run runs the tests every engine must pass: the behaviour the plugins
// rely on, whatever holds the records.
func Run(t *testing.T, e Engine) {
	for _, c := range []struct {
		name string
		test func(t *testing.T, e Engine)
	}{
		{"SetLookupExists", testSetLookupExists},
		{"SerialAndEvents", testSerialAndEvents},
		{"FailedUpdateChangesNothing", testFailedUpdateChangesNothing},
		{"OutsideZoneRefused", testOutsideZoneRefused},
		{"Usage", testUsage},
		{"ExpirySweepsLikeADelete", testExpirySweepsLikeADelete},
		{"ReopenKeepsData", testReopenKeepsData},
		{"FeedDropsLaggards", testFeedDropsLaggards},
		{"Remember", testRemember},
		{"ConcurrentUpdatesAreSerial", testConcurrentUpdatesAreSerial},
		{"FailedUpdateAmongConcurrent", testFailedUpdateAmongConcurrent},
	} {
		t.Run(c.name, func(t *testing.T) { c.test(t, e) })
	}
	for _, c := range userTests {
		t.Run(c.name, func(t *testing.T) { c.test(t, e) })
	}
}

const zone = "members.example.com."

// Clock is a settable test clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock is a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// opener opens the store of one place, closing it when the test ends.
type opener struct {
	t    *testing.T
	open func(zone string, now func() time.Time) (store.Store, error)
	c    *Clock
}

func newOpener(t *testing.T, e Engine) *opener {
	return &opener{t: t, open: e.Place(t), c: NewClock(time.Unix(1_800_000_000, 0))}
}

func (o *opener) store() store.Store {
	o.t.Helper()
	s, err := o.open(zone, o.c.Now)
	if err != nil {
		o.t.Fatal(err)
	}
	o.t.Cleanup(func() { s.Close() })
	return s
}

// RR parses a record in presentation format, failing the test if it
// does not parse.
func RR(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func set(t *testing.T, s store.Store, name string, recs ...store.Record) store.Event {
	t.Helper()
	ev, err := s.Update(func(tx store.Tx) error { return tx.Set(name, recs) })
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// NextEvent waits for sub's next event, failing the test if there is none
// within 10 s or the subscription ended.
func NextEvent(t testing.TB, sub *store.Subscription) store.Event {
	t.Helper()
	select {
	case ev, ok := <-sub.C:
		if !ok {
			t.Fatalf("subscription ended: %v", sub.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return store.Event{}
}

func testSetLookupExists(t *testing.T, e Engine) {
	s := newOpener(t, e).store()
	name := "_autotunnel._udp.laptop.alice.members.example.com."
	set(t, s, name, store.Record{RR: RR(t, name+" 60 IN SRV 0 0 4500 autotunnel-1.alice.members.example.com.")})

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
	for _, n := range []string{"laptop.alicia.members.example.com.", "aptop.alice.members.example.com."} {
		if _, exists, _ = s.Lookup(n); exists {
			t.Fatalf("%s, which nobody added, exists", n)
		}
	}
}

func testSerialAndEvents(t *testing.T, e Engine) {
	o := newOpener(t, e)
	s := o.store()
	sub := s.Subscribe(8)
	defer sub.Close()
	s0, _ := s.Serial()
	if s0 != uint32(o.c.Now().Unix()) {
		t.Fatalf("first serial %d, want the clock's %d", s0, o.c.Now().Unix())
	}
	name := "laptop.alice.members.example.com."
	a := store.Record{RR: RR(t, name+" 60 IN AAAA fd00::1"), Expires: o.c.Now().Add(time.Hour)}
	ev := set(t, s, name, a)
	if ev.Serial != s0+1 || len(ev.Changes) != 1 || len(ev.Changes[0].Added) != 1 || len(ev.Changes[0].Removed) != 0 {
		t.Fatalf("add: %+v", ev)
	}
	if got := NextEvent(t, sub); got.Serial != ev.Serial || got.Changes[0].Name != name {
		t.Fatalf("feed gave %+v, want %+v", got, ev)
	}
	if serial, _ := s.Serial(); serial != ev.Serial {
		t.Fatalf("Serial %d after the event's %d", serial, ev.Serial)
	}
	// The same record with a later lease is a renewal: no change, no
	// serial bump, no event.
	a.Expires = a.Expires.Add(time.Hour)
	if ev := set(t, s, name, a); len(ev.Changes) != 0 || ev.Serial != s0+1 {
		t.Fatalf("renewal changed the zone: %+v", ev)
	}
	// A new TTL is a change: the record is removed and added.
	b := store.Record{RR: RR(t, name+" 120 IN AAAA fd00::1")}
	ev = set(t, s, name, b)
	if ev.Serial != s0+2 || len(ev.Changes[0].Added) != 1 || len(ev.Changes[0].Removed) != 1 {
		t.Fatalf("TTL change: %+v", ev)
	}
	if got := NextEvent(t, sub); got.Serial != s0+2 {
		t.Fatalf("feed: got serial %d, want %d", got.Serial, s0+2)
	}
	select {
	case ev := <-sub.C:
		t.Fatalf("renewal produced an event: %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

func testFailedUpdateChangesNothing(t *testing.T, e Engine) {
	s := newOpener(t, e).store()
	name := "host.alice.members.example.com."
	s0, _ := s.Serial()
	boom := errors.New("boom")
	_, err := s.Update(func(tx store.Tx) error {
		if err := tx.Set(name, []store.Record{{RR: RR(t, name+" 60 IN A 192.0.2.1")}}); err != nil {
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

func testOutsideZoneRefused(t *testing.T, e Engine) {
	s := newOpener(t, e).store()
	if _, err := s.Update(func(tx store.Tx) error {
		return tx.Set("evil.example.com.", []store.Record{{RR: RR(t, "evil.example.com. 60 IN A 192.0.2.1")}})
	}); err == nil {
		t.Fatal("a name outside the zone was written")
	}
	if _, err := s.Update(func(tx store.Tx) error {
		return tx.Set("a.members.example.com.", []store.Record{{RR: RR(t, "b.members.example.com. 60 IN A 192.0.2.1")}})
	}); err == nil {
		t.Fatal("a record was written at a name other than its owner")
	}
}

func testUsage(t *testing.T, e Engine) {
	s := newOpener(t, e).store()
	r1 := RR(t, "a.alice.members.example.com. 60 IN A 192.0.2.1")
	r2 := RR(t, "b.c.alice.members.example.com. 60 IN TXT \"hello\"")
	set(t, s, "a.alice.members.example.com.", store.Record{RR: r1})
	set(t, s, "b.c.alice.members.example.com.", store.Record{RR: r2})
	set(t, s, "x.bob.members.example.com.", store.Record{RR: RR(t, "x.bob.members.example.com. 60 IN A 192.0.2.9")})
	var u store.Usage
	s.Update(func(tx store.Tx) (err error) {
		u, err = tx.Usage("alice.members.example.com.")
		return err
	})
	if want := (store.Usage{Records: 2, Bytes: dns.Len(r1) + dns.Len(r2)}); u != want {
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

func testExpirySweepsLikeADelete(t *testing.T, e Engine) {
	o := newOpener(t, e)
	s := o.store()
	sub := s.Subscribe(8)
	name := "laptop.alice.members.example.com."
	short := store.Record{RR: RR(t, name+" 60 IN AAAA fd00::1"), Expires: o.c.Now().Add(30 * time.Minute)}
	long := store.Record{RR: RR(t, name+" 60 IN TXT \"x\""), Expires: o.c.Now().Add(2 * time.Hour)}
	forever := store.Record{RR: RR(t, name+" 60 IN A 192.0.2.1")}
	set(t, s, name, short, long, forever)
	NextEvent(t, sub)
	serial, _ := s.Serial()

	o.c.Add(30 * time.Minute)
	// Expired but not yet swept: never served.
	if rrs, _, _ := s.Lookup(name); len(rrs) != 2 {
		t.Fatalf("an expired record is still served: %v", rrs)
	}
	n, err := e.Sweep(s)
	if err != nil || n != 1 {
		t.Fatalf("Sweep deleted %d records (%v), want 1", n, err)
	}
	ev := NextEvent(t, sub)
	if !ev.Expired || ev.Serial != serial+1 || len(ev.Changes) != 1 || len(ev.Changes[0].Removed) != 1 || ev.Changes[0].Removed[0].Header().Rrtype != dns.TypeAAAA {
		t.Fatalf("expiry event %+v, want the AAAA removed with a serial bump", ev)
	}
	if n, _ := e.Sweep(s); n != 0 {
		t.Fatalf("a second sweep deleted %d records", n)
	}

	// Expiry across a restart: the TXT's lease ends while the store is
	// closed; the records are not served, and the sweep removes them.
	s.Close()
	o.c.Add(2 * time.Hour)
	s = o.store()
	rrs, _, _ := s.Lookup(name)
	if len(rrs) != 1 || rrs[0].Header().Rrtype != dns.TypeA {
		t.Fatalf("after a restart past the lease: %v, want only the A without lease", rrs)
	}
	if _, err := e.Sweep(s); err != nil { // or the engine swept when it opened
		t.Fatal(err)
	}
	if n, _ := e.Sweep(s); n != 0 {
		t.Fatalf("a sweep after the restart's sweep deleted %d records", n)
	}
}

func testReopenKeepsData(t *testing.T, e Engine) {
	o := newOpener(t, e)
	s := o.store()
	set(t, s, "h.alice.members.example.com.", store.Record{RR: RR(t, "h.alice.members.example.com. 60 IN A 192.0.2.1")})
	serial, _ := s.Serial()
	s.Close()
	s = o.store()
	if got, _ := s.Serial(); got != serial {
		t.Fatalf("serial %d after reopening, want %d", got, serial)
	}
	if rrs, _, _ := s.Lookup("h.alice.members.example.com."); len(rrs) != 1 {
		t.Fatalf("record lost on reopening: %v", rrs)
	}
	s.Close()
	if other, err := o.open("other.example.", o.c.Now); err == nil {
		other.Close()
		t.Fatal("a store for another zone opened")
	}
}

func testFeedDropsLaggards(t *testing.T, e Engine) {
	s := newOpener(t, e).store()
	slow := s.Subscribe(1)
	fast := s.Subscribe(16)
	name := "h.alice.members.example.com."
	for i := range 3 {
		set(t, s, name, store.Record{RR: RR(t, fmt.Sprintf("%s 60 IN A 192.0.2.%d", name, i+1))})
	}
	// The feed may deliver a moment after Update returns.
	deadline := time.Now().Add(10 * time.Second)
	for len(fast.C) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
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

// testRemember: an id is fresh once, stays remembered across a reopen,
// and a transaction that fails remembers nothing.
func testRemember(t *testing.T, e Engine) {
	o := newOpener(t, e)
	s := o.store()
	remember := func(s store.Store, id string, signed time.Time) bool {
		t.Helper()
		var fresh bool
		if _, err := s.Update(func(tx store.Tx) (err error) { fresh, err = tx.Remember([]byte(id), signed); return }); err != nil {
			t.Fatal(err)
		}
		return fresh
	}
	signed := o.c.Now()
	if !remember(s, "a", signed) || remember(s, "a", signed) {
		t.Fatal("the same id twice: want fresh, then not")
	}
	if !remember(s, "b", signed) || !remember(s, "a", signed.Add(time.Second)) {
		t.Fatal("another id, or the same one at another time: want fresh")
	}
	s.Update(func(tx store.Tx) error { tx.Remember([]byte("rolled back"), signed); return errors.New("fail") })
	s.Close()
	s = o.store()
	if remember(s, "a", signed) {
		t.Error("forgotten across a reopen")
	}
	if !remember(s, "rolled back", signed) {
		t.Error("a failed transaction remembered its id")
	}
}

// testConcurrentUpdatesAreSerial runs many transactions at once that each
// read a counter and write it plus one, and others whose prerequisite
// conflicts (create a name only if it does not exist): however an engine
// batches them, the outcome must be what one at a time would give. Every
// transaction that changed something is its own event, in commit order,
// with consecutive serials.
func testConcurrentUpdatesAreSerial(t *testing.T, e Engine) {
	s := newOpener(t, e).store()
	sub := s.Subscribe(1000)
	s0, _ := s.Serial()
	counter := "counter.alice.members.example.com."
	first := "first.alice.members.example.com."
	errTaken := errors.New("taken")
	const n = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	serials := make(map[uint32]bool)
	for i := range n {
		wg.Go(func() {
			var ev store.Event
			var err error
			if i%2 == 0 {
				ev, err = s.Update(func(tx store.Tx) error {
					recs, err := tx.Get(counter)
					if err != nil {
						return err
					}
					v := 0
					if len(recs) == 1 {
						fmt.Sscanf(recs[0].RR.(*dns.TXT).Txt[0], "%d", &v)
					}
					return tx.Set(counter, []store.Record{{RR: RR(t, fmt.Sprintf("%s 60 IN TXT \"%d\"", counter, v+1))}})
				})
			} else {
				ev, err = s.Update(func(tx store.Tx) error {
					if recs, err := tx.Get(first); err != nil || len(recs) > 0 {
						return errors.Join(err, errTaken)
					}
					return tx.Set(first, []store.Record{{RR: RR(t, fmt.Sprintf("%s 60 IN TXT \"%d\"", first, i))}})
				})
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, errTaken):
				return
			case err != nil:
				t.Error(err)
				return
			case i%2 == 1:
				won++
			}
			if serials[ev.Serial] {
				t.Errorf("two transactions got serial %d", ev.Serial)
			}
			serials[ev.Serial] = true
		})
	}
	wg.Wait()
	rrs, _, _ := s.Lookup(counter)
	if len(rrs) != 1 || rrs[0].(*dns.TXT).Txt[0] != fmt.Sprint(n/2) {
		t.Fatalf("counter %v after %d increments", rrs, n/2)
	}
	if won != 1 {
		t.Fatalf("%d transactions created the name, want exactly 1", won)
	}
	want := s0 + 1
	for range n/2 + 1 {
		ev := NextEvent(t, sub)
		if ev.Serial != want || len(ev.Changes) != 1 {
			t.Fatalf("event %+v, want serial %d with one change", ev, want)
		}
		want++
	}
	select {
	case ev := <-sub.C:
		t.Fatalf("an event more than transactions that changed something: %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

// testFailedUpdateAmongConcurrent: transactions that fail after writing
// leave the others that ran beside them applied, also after a reopen.
func testFailedUpdateAmongConcurrent(t *testing.T, e Engine) {
	o := newOpener(t, e)
	s := o.store()
	boom := errors.New("boom")
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			name := fmt.Sprintf("h%d.alice.members.example.com.", i)
			_, err := s.Update(func(tx store.Tx) error {
				if err := tx.Set(name, []store.Record{{RR: RR(t, name+" 60 IN A 192.0.2.1")}}); err != nil {
					return err
				}
				if _, err := tx.Remember([]byte(name), o.c.Now()); err != nil {
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
	check := func(s store.Store) {
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
				fresh, err = tx.Remember([]byte(name), o.c.Now())
				return errors.New("look only")
			})
			if fresh != (i%3 == 0) {
				t.Errorf("%s: id remembered %v, want %v", name, !fresh, i%3 != 0)
			}
		}
	}
	check(s)
	s.Close()
	check(o.store())
}
