package llq

import (
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
)

// conn is what the server keeps of one TCP or TLS connection from an LLQ
// client: the LLQs whose events go on it. The connection itself (reading,
// framing, writing whole messages) is rawdns's.
type conn struct {
	rc *rawdns.Conn

	// llqs are the LLQs whose events go on this connection; guarded by
	// Server.mu.
	llqs map[uint64]*llq
}

// idleTimeout ends a connection that says nothing for longer than the
// longest lease: its client would have had to refresh.
const idleTimeout = 2*time.Hour + time.Minute

func (c *conn) write(b []byte) error { return c.rc.Write(b) }

func (c *conn) close() { c.rc.Close() }

// serveRaw serves one message from the listeners.
func (s *Server) serveRaw(msg []byte, from *rawdns.Source) {
	s.handle(msg, origin{addr: from.Addr, conn: s.connOf(from.Conn())})
}

// connOf returns the state of connection rc, made at its first message;
// nil for a datagram.
func (s *Server) connOf(rc *rawdns.Conn) *conn {
	if rc == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conns[rc]
	if !ok {
		c = &conn{rc: rc, llqs: make(map[uint64]*llq)}
		s.conns[rc] = c
	}
	return c
}

// connClosed moves a closed connection's LLQs to UDP.
func (s *Server) connClosed(rc *rawdns.Conn, err error) {
	if err != nil {
		log.Debugf("TLS handshake: %v", err)
	}
	s.mu.Lock()
	c := s.conns[rc]
	s.mu.Unlock()
	if c != nil {
		s.connGone(c)
	}
}
