// Package netmon tells when the host's network changed: an address, a link
// or a route, from the kernel's netlink notifications, debounced so that
// the burst a move causes (link down, address gone, address added, route
// added) is one change.
package netmon

import (
	"context"
	"time"

	"github.com/vishvananda/netlink"
)

// DefaultDebounce is how long a burst may go quiet before it counts as
// one change: long enough for DHCP's address-then-route, short enough
// that a move is noticed at once.
const DefaultDebounce = 300 * time.Millisecond

// Watch sends on the returned channel (coalesced, never blocking the
// kernel's notifications) after every burst of changes, until ctx ends.
// It fails only if netlink cannot be subscribed to.
func Watch(ctx context.Context, debounce time.Duration) (<-chan struct{}, error) {
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	done := make(chan struct{})
	addrs := make(chan netlink.AddrUpdate, 64)
	links := make(chan netlink.LinkUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.AddrSubscribe(addrs, done); err != nil {
		close(done)
		return nil, err
	}
	if err := netlink.LinkSubscribe(links, done); err != nil {
		close(done)
		return nil, err
	}
	if err := netlink.RouteSubscribe(routes, done); err != nil {
		close(done)
		return nil, err
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(done)
		var fire <-chan time.Time
		var t *time.Timer
		kick := func() {
			if t == nil {
				t = time.NewTimer(debounce)
			} else {
				t.Reset(debounce)
			}
			fire = t.C
		}
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-addrs:
				if !ok {
					return
				}
				kick()
			case _, ok := <-links:
				if !ok {
					return
				}
				kick()
			case _, ok := <-routes:
				if !ok {
					return
				}
				kick()
			case <-fire:
				fire = nil
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, nil
}
