package store

import (
	"sync"
)

// Feed fans committed events out to subscribers. Store implementations
// embed one and call Publish once per commit, in commit order.
//
// The guarantees a subscriber can rely on:
//
//   - Events arrive in commit order, each exactly once, with nothing
//     left out, for as long as the subscription lives.
//   - Publish never blocks. A subscriber whose queue is full is cut off:
//     its channel is closed and Err returns ErrLagged. It should then
//     subscribe again and read the current state from the store, so that a
//     slow subscriber (an LLQ client on a bad link, say) never delays a
//     commit or anyone else.
//   - Events published before Subscribe returned are not delivered.
//   - When the store closes, every channel is closed and Err returns
//     ErrClosed.
//
// The zero Feed is ready to use.
type Feed struct {
	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
}

// Subscription is one subscriber's queue of events.
type Subscription struct {
	// C delivers the events. It is closed when the subscription ends.
	C <-chan Event

	c    chan Event
	feed *Feed
	err  error // guarded by feed.mu; set once, when c is closed
}

// Subscribe starts a subscription with room for queue events.
func (f *Feed) Subscribe(queue int) *Subscription {
	if queue < 1 {
		queue = 1
	}
	c := make(chan Event, queue)
	s := &Subscription{C: c, c: c, feed: f}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		s.endLocked(ErrClosed)
		return s
	}
	if f.subs == nil {
		f.subs = make(map[*Subscription]struct{})
	}
	f.subs[s] = struct{}{}
	return s
}

// Publish hands ev to every subscriber without blocking.
func (f *Feed) Publish(ev Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		select {
		case s.c <- ev:
		default:
			delete(f.subs, s)
			s.endLocked(ErrLagged)
		}
	}
}

// Lag ends every subscription with ErrLagged, for a store that lost
// events it cannot publish (its holders read the store again); later
// subscriptions work as usual.
func (f *Feed) Lag() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		delete(f.subs, s)
		s.endLocked(ErrLagged)
	}
}

// Close ends every subscription with ErrClosed; later ones start ended.
func (f *Feed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for s := range f.subs {
		s.endLocked(ErrClosed)
	}
	f.subs = nil
}

// Close ends the subscription. Events still queued stay readable.
func (s *Subscription) Close() {
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	if s.err == nil {
		delete(s.feed.subs, s)
		s.endLocked(ErrClosed)
	}
}

// Err says why C was closed: ErrLagged or ErrClosed; nil while it is open.
func (s *Subscription) Err() error {
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	return s.err
}

func (s *Subscription) endLocked(err error) {
	if s.err == nil {
		s.err = err
		close(s.c)
	}
}
