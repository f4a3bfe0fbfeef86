package store

import (
	"errors"
	"testing"
)

// TestFeedLag: Lag ends every subscription with ErrLagged, after the
// events already queued, and later subscriptions get events again.
func TestFeedLag(t *testing.T) {
	var f Feed
	a, b := f.Subscribe(4), f.Subscribe(4)
	f.Publish(Event{Serial: 1})
	f.Lag()
	for _, s := range []*Subscription{a, b} {
		n := 0
		for range s.C {
			n++
		}
		if n != 1 || !errors.Is(s.Err(), ErrLagged) {
			t.Fatalf("got %d events and %v, want the queued one and ErrLagged", n, s.Err())
		}
	}
	c := f.Subscribe(4)
	f.Publish(Event{Serial: 2})
	if ev := <-c.C; ev.Serial != 2 {
		t.Fatalf("a subscription after Lag got %+v", ev)
	}
}
