package netmon

import "github.com/vishvananda/netlink"

// subscribe merges netlink's address, link and route notifications into
// one channel; stop ends them.
func subscribe() (events <-chan struct{}, stop func(), err error) {
	done := make(chan struct{})
	addrs := make(chan netlink.AddrUpdate, 64)
	links := make(chan netlink.LinkUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.AddrSubscribe(addrs, done); err != nil {
		close(done)
		return nil, nil, err
	}
	if err := netlink.LinkSubscribe(links, done); err != nil {
		close(done)
		return nil, nil, err
	}
	if err := netlink.RouteSubscribe(routes, done); err != nil {
		close(done)
		return nil, nil, err
	}
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		for {
			select {
			case _, ok := <-addrs:
				if !ok {
					return
				}
			case _, ok := <-links:
				if !ok {
					return
				}
			case _, ok := <-routes:
				if !ok {
					return
				}
			}
			notify(ch)
		}
	}()
	return ch, func() { close(done) }, nil
}
