package llq

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
)

// conn is one TCP or TLS connection from an LLQ client. Messages are
// read by one goroutine and written under wmu; events and replies
// interleave whole messages.
type conn struct {
	c    net.Conn
	addr netip.AddrPort

	wmu    sync.Mutex
	closed bool // guarded by wmu

	// llqs are the LLQs whose events go on this connection; guarded by
	// Server.mu.
	llqs map[uint64]*llq
}

const (
	// idleTimeout ends a connection that says nothing for longer than the
	// longest lease: its client would have had to refresh.
	idleTimeout  = 2*time.Hour + time.Minute
	writeTimeout = 10 * time.Second
	maxTCPConns  = 10000
)

func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	if len(b) > 0xFFFF {
		return errors.New("llq: message too long for TCP")
	}
	buf := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(buf, uint16(len(b)))
	copy(buf[2:], b)
	c.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.c.Write(buf)
	return err
}

func (c *conn) close() {
	c.wmu.Lock()
	c.closed = true
	c.wmu.Unlock()
	c.c.Close()
}

// serveUDP reads datagrams until the socket closes.
func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		msg := append([]byte(nil), buf[:n]...)
		s.handle(msg, origin{addr: netip.AddrPortFrom(from.Addr().Unmap(), from.Port())})
	}
}

// serveTCP accepts connections (plain or TLS) until the listener closes.
func (s *Server) serveTCP(l net.Listener) {
	defer s.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		cn := &conn{c: c, addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), llqs: make(map[uint64]*llq)}
		s.mu.Lock()
		if s.closed || len(s.conns) >= maxTCPConns {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[cn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(cn)
	}
}

// serveConn reads length-prefixed messages from one connection.
func (s *Server) serveConn(c *conn) {
	defer s.wg.Done()
	defer func() {
		c.close()
		s.connGone(c)
	}()
	if err := rawdns.ReadFramed(c.c, idleTimeout, func(msg []byte) { s.handle(msg, origin{addr: c.addr, conn: c}) }); err != nil {
		log.Debugf("TLS handshake with %s: %v", c.addr, err)
	}
}
