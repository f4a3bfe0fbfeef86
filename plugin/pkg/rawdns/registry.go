package rawdns

import "github.com/openbtmm/btmm/plugin/pkg/shared"

// servers shares listeners across Corefile reloads, keyed by their
// addresses (see package shared).
var servers shared.Registry[*Server]

// Acquire returns the server listening on a, opened and serving with h if
// it was not running, else with h installed in place of its handler.
// Whether it was already running is reported, for logs.
func Acquire(a Addrs, h Handler) (s *Server, running bool, err error) {
	return servers.Acquire(a.String(), func() (*Server, error) {
		srv, err := Listen(a)
		if err != nil {
			return nil, err
		}
		srv.Serve(h)
		return srv, nil
	}, func(s *Server) error {
		s.SetHandler(h)
		return nil
	})
}

// Release gives back what Acquire(a, ...) returned; the last release
// closes the listeners.
func Release(a Addrs) error {
	return servers.Release(a.String(), (*Server).Close)
}
