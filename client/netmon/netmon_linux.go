package netmon

import "github.com/vishvananda/netlink"

// subscribe merges netlink's address, link and route notifications into
// one channel, leaving out those of the interfaces named in ignore; stop
// ends them.
func subscribe(ignore []string) (events <-chan struct{}, stop func(), err error) {
	ignored := make(map[int]bool)
	for _, name := range ignore {
		if l, err := netlink.LinkByName(name); err == nil {
			ignored[l.Attrs().Index] = true
		}
	}
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
			var index int
			select {
			case u, ok := <-addrs:
				if !ok {
					return
				}
				index = u.LinkIndex
			case u, ok := <-links:
				if !ok {
					return
				}
				index = u.Attrs().Index
			case u, ok := <-routes:
				if !ok {
					return
				}
				index = u.LinkIndex
			}
			if !ignored[index] {
				notify(ch)
			}
		}
	}()
	return ch, func() { close(done) }, nil
}
