package etcdstore

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/etcdstore/etcdtest"
	"github.com/openbtmm/btmm/plugin/pkg/store/storetest"
)

const zone = "members.example.com."

// instances opens a store on one prefix for each list of endpoints, each
// with a client of its own, on clock c.
func instances(t *testing.T, endpoints [][]string, c *storetest.Clock) []*Store {
	t.Helper()
	prefix := fmt.Sprintf("/btmm-test/%s/", t.Name())
	var out []*Store
	for _, eps := range endpoints {
		cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(cli, prefix, zone, Options{Now: c.Now, ManualSweep: true, Timeout: 3 * time.Second, Logf: t.Logf})
		if err != nil {
			cli.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(); cli.Close() })
		out = append(out, s)
	}
	return out
}

// testReadYourWritesAcross: an UPDATE acknowledged by instance A is
// answered by instance B at once (no waiting, no retry), and B's
// subscribers get its event with A's serial.
func testReadYourWritesAcross(t *testing.T, endpoints [][]string) {
	c := storetest.NewClock(time.Now())
	st := instances(t, endpoints, c)
	a, b := st[0], st[1]
	sub := b.Subscribe(100)
	for i := range 50 {
		name := fmt.Sprintf("h%d.alice.members.example.com.", i)
		ev, err := a.Update(func(tx store.Tx) error {
			return tx.Set(name, []store.Record{{RR: storetest.RR(t, name+" 60 IN A 192.0.2.1")}})
		})
		if err != nil {
			t.Fatal(err)
		}
		rrs, exists, err := b.Lookup(name)
		if err != nil || !exists || len(rrs) != 1 {
			t.Fatalf("update %d through A: B answers %v %v %v", i, rrs, exists, err)
		}
		if serial, _ := b.Serial(); serial != ev.Serial {
			t.Fatalf("B's serial %d, A's commit %d", serial, ev.Serial)
		}
		if got := storetest.NextEvent(t, sub); got.Serial != ev.Serial || got.Changes[0].Name != name {
			t.Fatalf("B's event %+v, want A's %+v", got, ev)
		}
	}
}

// testRacesAcross: UPDATEs through two instances at once, each reading a
// counter and writing it plus one, or creating a name only if it is
// absent: the outcome is what one at a time would give, cluster-wide.
func testRacesAcross(t *testing.T, endpoints [][]string) {
	c := storetest.NewClock(time.Now())
	st := instances(t, endpoints, c)
	counter := "counter.alice.members.example.com."
	first := "first.alice.members.example.com."
	errTaken := errors.New("taken")
	const n = 100
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range n {
		s := st[i%2]
		wg.Go(func() {
			_, err := s.Update(func(tx store.Tx) error {
				recs, err := tx.Get(counter)
				if err != nil {
					return err
				}
				v := 0
				if len(recs) == 1 {
					fmt.Sscanf(recs[0].RR.(*dns.TXT).Txt[0], "%d", &v)
				}
				return tx.Set(counter, []store.Record{{RR: storetest.RR(t, fmt.Sprintf("%s 60 IN TXT \"%d\"", counter, v+1))}})
			})
			if err != nil {
				t.Error(err)
			}
			_, err = s.Update(func(tx store.Tx) error {
				if recs, err := tx.Get(first); err != nil || len(recs) > 0 {
					return errors.Join(err, errTaken)
				}
				return tx.Set(first, []store.Record{{RR: storetest.RR(t, fmt.Sprintf("%s 60 IN TXT \"%d\"", first, i))}})
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case !errors.Is(err, errTaken):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, s := range st {
		rrs, _, _ := s.Lookup(counter)
		if len(rrs) != 1 || rrs[0].(*dns.TXT).Txt[0] != fmt.Sprint(n) {
			t.Fatalf("counter %v after %d increments through two instances", rrs, n)
		}
	}
	if won != 1 {
		t.Fatalf("%d UPDATEs created the name, want exactly 1", won)
	}
}

// testOneRemovalPerLease: a lease that ends is removed once for the
// cluster, though both instances sweep: one expiry event on each.
func testOneRemovalPerLease(t *testing.T, endpoints [][]string) {
	c := storetest.NewClock(time.Now())
	st := instances(t, endpoints, c)
	subs := []*store.Subscription{st[0].Subscribe(10), st[1].Subscribe(10)}
	name := "laptop.alice.members.example.com."
	if _, err := st[0].Update(func(tx store.Tx) error {
		return tx.Set(name, []store.Record{{RR: storetest.RR(t, name+" 60 IN AAAA fd00::1"), Expires: c.Now().Add(time.Minute)}})
	}); err != nil {
		t.Fatal(err)
	}
	for _, sub := range subs {
		storetest.NextEvent(t, sub)
	}
	c.Add(time.Minute)
	var wg sync.WaitGroup
	removed := make([]int, 2)
	for i, s := range st {
		wg.Go(func() {
			var err error
			if removed[i], err = s.Sweep(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if removed[0]+removed[1] != 1 {
		t.Fatalf("the sweeps removed %v records, want 1 in all", removed)
	}
	for i, sub := range subs {
		if ev := storetest.NextEvent(t, sub); !ev.Expired || len(ev.Changes) != 1 {
			t.Fatalf("instance %d: event %+v, want the expiry", i, ev)
		}
		select {
		case ev := <-sub.C:
			t.Fatalf("instance %d: a second event %+v", i, ev)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestInstances: two instances, each talking to another member of a
// three-member cluster, serve one zone.
func TestInstances(t *testing.T) {
	cl := etcdtest.Start(t, 3)
	eps := cl.Endpoints()
	two := [][]string{{eps[0]}, {eps[2]}}
	t.Run("ReadYourWritesAcross", func(t *testing.T) { testReadYourWritesAcross(t, two) })
	t.Run("RacesAcross", func(t *testing.T) { testRacesAcross(t, two) })
	t.Run("OneRemovalPerLease", func(t *testing.T) { testOneRemovalPerLease(t, two) })
}

// update sets one A record at name through s.
func update(s *Store, name string) (store.Event, error) {
	rr, _ := dns.NewRR(name + " 60 IN A 192.0.2.1")
	return s.Update(func(tx store.Tx) error { return tx.Set(name, []store.Record{{RR: rr}}) })
}

// TestFailures: losing one member of three, the leader included, does not
// stop UPDATEs for longer than an election; losing two fails them (an
// error, never a false success) while queries go on from the copy; one
// member back, and they work again. An instance cut off from its member
// gets, once the member is back, every event it missed, in order.
func TestFailures(t *testing.T) {
	cl := etcdtest.Start(t, 3)
	eps := cl.Endpoints()
	c := storetest.NewClock(time.Now())
	st := instances(t, [][]string{eps, {eps[2], eps[1], eps[0]}}, c)
	a, b := st[0], st[1]
	sub := b.Subscribe(1000)
	var acked []store.Event
	n := 0
	// within tries updates through a until one succeeds or d passes.
	within := func(d time.Duration) error {
		deadline := time.Now().Add(d)
		for {
			n++
			ev, err := update(a, fmt.Sprintf("h%d.alice.members.example.com.", n))
			if err == nil {
				acked = append(acked, ev)
				return nil
			}
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := within(0); err != nil {
		t.Fatal(err)
	}

	leader := cl.Leader(t)
	cl.Stop(leader)
	start := time.Now()
	if err := within(10 * time.Second); err != nil {
		t.Fatalf("no update within 10 s of the leader's loss: %v", err)
	}
	t.Logf("updates again %v after the leader was killed", time.Since(start).Round(time.Millisecond))
	for range 5 {
		if err := within(0); err != nil {
			t.Fatalf("with two members of three: %v", err)
		}
	}

	second := (leader + 1) % 3
	cl.Stop(second)
	name := "lost.alice.members.example.com."
	if _, err := update(a, name); err == nil {
		t.Fatal("an update succeeded with one member of three")
	}
	if rrs, exists, err := b.Lookup(acked[0].Changes[0].Name); err != nil || !exists || len(rrs) != 1 {
		t.Fatalf("without a quorum, a query: %v %v %v; want the copy's answer", rrs, exists, err)
	}

	cl.Restart(second)
	if err := within(10 * time.Second); err != nil {
		t.Fatalf("no update within 10 s of a quorum's return: %v", err)
	}
	// The refused update may still be there: the member left alone may
	// have had it in its log, and committed it once the quorum was back.
	// A failed UPDATE means "not known to be done", never the opposite.
	cl.Restart(leader)

	// b heard of every acknowledged update, once, in order.
	for _, want := range acked {
		got := storetest.NextEvent(t, sub)
		if got.Changes[0].Name == name {
			got = storetest.NextEvent(t, sub)
		}
		if got.Serial != want.Serial || got.Changes[0].Name != want.Changes[0].Name {
			t.Fatalf("b's event %d %v, want %d %v", got.Serial, got.Changes[0].Name, want.Serial, want.Changes[0].Name)
		}
	}
}

// TestCatchUp: an instance whose only member is down misses nothing:
// when the member is back, its subscribers get the events committed
// meanwhile through the others, in order.
func TestCatchUp(t *testing.T) {
	cl := etcdtest.Start(t, 3)
	eps := cl.Endpoints()
	c := storetest.NewClock(time.Now())
	st := instances(t, [][]string{{eps[0], eps[1]}, {eps[2]}}, c)
	a, b := st[0], st[1]
	sub := b.Subscribe(100)
	cl.Stop(2)
	var acked []store.Event
	for i := range 10 {
		ev, err := update(a, fmt.Sprintf("while-away%d.alice.members.example.com.", i))
		for err != nil && len(acked) == 0 && i == 0 {
			time.Sleep(100 * time.Millisecond) // an election, if member 2 led
			ev, err = update(a, fmt.Sprintf("while-away%d.alice.members.example.com.", i))
		}
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, ev)
	}
	cl.Restart(2)
	for _, want := range acked {
		if got := storetest.NextEvent(t, sub); got.Serial != want.Serial {
			t.Fatalf("after the member's return, event %d, want %d", got.Serial, want.Serial)
		}
	}
	if rrs, _, err := b.Lookup(acked[9].Changes[0].Name); err != nil || len(rrs) != 1 {
		t.Fatalf("b after catching up: %v %v", rrs, err)
	}
}
