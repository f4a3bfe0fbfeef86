// Package netmon tells when the host's network changed: an address, a link
// or a route, from the kernel's notifications (netlink on Linux, the
// routing socket on macOS), debounced so that the burst a move causes
// (link down, address gone, address added, route added) is one change.
package netmon

import (
	"context"
	"time"
)

// DefaultDebounce is how long a burst may go quiet before it counts as
// one change: long enough for DHCP's address-then-route, short enough
// that a move is noticed at once.
const DefaultDebounce = 300 * time.Millisecond

// Watch sends on the returned channel (coalesced, never blocking the
// kernel's notifications) after every burst of changes, until ctx ends.
// Changes of the interfaces named in ignore (the tunnel's own device,
// whose routes the client adds for each peer) are not the host's network
// changing, and are left out (Linux; macOS reports every change). It
// fails only if the kernel's notifications cannot be subscribed to.
func Watch(ctx context.Context, debounce time.Duration, ignore ...string) (<-chan struct{}, error) {
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	events, stop, err := subscribe(ignore)
	if err != nil {
		return nil, err
	}
	out := make(chan struct{}, 1)
	go func() {
		defer stop()
		debounced(ctx, debounce, events, out)
	}()
	return out, nil
}

// debounced sends on out once events has been quiet for debounce after
// one or more events, until ctx ends or events is closed.
func debounced(ctx context.Context, debounce time.Duration, events <-chan struct{}, out chan<- struct{}) {
	var fire <-chan time.Time
	var t *time.Timer
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				return
			}
			if t == nil {
				t = time.NewTimer(debounce)
			} else {
				t.Reset(debounce)
			}
			fire = t.C
		case <-fire:
			fire = nil
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}
}

// notify hands one event on without blocking: a pending one already says
// "something changed".
func notify(events chan<- struct{}) {
	select {
	case events <- struct{}{}:
	default:
	}
}
