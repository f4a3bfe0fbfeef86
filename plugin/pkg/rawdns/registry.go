package rawdns

import "sync"

// A Corefile reload builds the new plugin instances before it shuts the old
// ones down, and the new ones want the same sockets. So servers are shared
// through this registry, keyed by their addresses and counted: Acquire
// opens them or takes the running ones and installs the newest handler;
// the last Release closes them.
var registry struct {
	sync.Mutex
	servers map[string]*shared
}

type shared struct {
	*Server
	refs int
}

// Acquire returns the server listening on a, opened and serving with h if
// it was not running, else with h installed in place of its handler.
// Whether it was already running is reported, for logs.
func Acquire(a Addrs, h Handler) (s *Server, running bool, err error) {
	key := a.String()
	registry.Lock()
	defer registry.Unlock()
	if s, ok := registry.servers[key]; ok {
		s.refs++
		s.SetHandler(h)
		return s.Server, true, nil
	}
	srv, err := Listen(a)
	if err != nil {
		return nil, false, err
	}
	srv.Serve(h)
	if registry.servers == nil {
		registry.servers = make(map[string]*shared)
	}
	registry.servers[key] = &shared{Server: srv, refs: 1}
	return srv, false, nil
}

// Release gives back what Acquire(a, ...) returned; the last release
// closes the listeners.
func Release(a Addrs) error {
	key := a.String()
	registry.Lock()
	defer registry.Unlock()
	s, ok := registry.servers[key]
	if !ok {
		return nil
	}
	if s.refs--; s.refs > 0 {
		return nil
	}
	delete(registry.servers, key)
	return s.Close()
}
