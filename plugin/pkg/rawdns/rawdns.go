// Package rawdns runs DNS listeners (UDP, TCP, TLS) of a plugin's own,
// which hand the plugin every message as the octets that arrived.
//
// CoreDNS's own listeners hand plugins a parsed message: the bytes are gone,
// so a TSIG MAC can only be checked over a re-encoding, and over UDP they
// read 512 octets, whatever the request's EDNS size. A plugin that must see
// what the client sent (TSIG over the exact bytes, messages of any size)
// takes its messages here instead.
//
// A Server outlives Corefile reloads: Acquire shares one per set of
// addresses, counted, and swaps in the newest handler, so that a reload
// neither closes the sockets nor drops a connection.
package rawdns

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Addrs names the listeners to open; an empty address is off.
type Addrs struct {
	UDP, TCP, TLS string
	TLSConfig     *tls.Config // for TLS
}

// String names the listeners, as logs and the registry do.
func (a Addrs) String() string {
	var parts []string
	for _, p := range [][2]string{{"udp", a.UDP}, {"tcp", a.TCP}, {"tls", a.TLS}} {
		if p[1] != "" {
			parts = append(parts, p[0]+"://"+p[1])
		}
	}
	return strings.Join(parts, " ")
}

// Empty reports whether no listener is set.
func (a Addrs) Empty() bool { return a.UDP == "" && a.TCP == "" && a.TLS == "" }

// Handler serves one message. msg is the message's octets as they arrived
// and belongs to the handler; from replies. Handlers run concurrently.
type Handler func(msg []byte, from *Source)

// Source is where a message came from and how to answer it.
type Source struct {
	Addr netip.AddrPort // the client's address and port
	Net  string         // "udp", "tcp" or "tls"

	udp  *net.UDPConn
	conn *Conn
}

// UDP reports whether the message came in a datagram, where replies must
// fit the client's buffer.
func (s *Source) UDP() bool { return s.udp != nil }

// Conn is the connection the message came on, the same for every message
// of it, or nil for a datagram: a handler that keeps state per client
// connection (to write to it later, unasked) keys it by this.
func (s *Source) Conn() *Conn { return s.conn }

// Reply sends one message to the client.
func (s *Source) Reply(b []byte) error {
	if s.udp != nil {
		_, err := s.udp.WriteToUDPAddrPort(b, s.Addr)
		return err
	}
	return s.conn.Write(b)
}

const (
	// maxInFlight bounds the UDP messages being served at once; beyond it
	// datagrams wait in the socket's buffer.
	maxInFlight = 1024
	// maxConns bounds the open TCP and TLS connections.
	maxConns = 10000
	// idleTimeout closes a connection that sends nothing for this long
	// (RFC 7766 §6.2.3 suggests seconds, not minutes, for a busy server).
	idleTimeout  = 30 * time.Second
	writeTimeout = 10 * time.Second
)

// Server is a set of listeners and the handler they feed. Its exported
// fields are set, if at all, before Serve.
type Server struct {
	// IdleTimeout closes a connection that sends nothing for this long;
	// 0 is 30 seconds. A server whose clients hold connections open to be
	// written to (LLQ) sets it longer than their refresh interval.
	IdleTimeout time.Duration
	// ConnClosed, if set, is called once a TCP or TLS connection has
	// ended, after the last of its messages was served, with the error of
	// a failed TLS handshake, if that was why: for a handler that keeps
	// state per connection.
	ConnClosed func(c *Conn, err error)

	handler atomic.Pointer[Handler]

	udp       *net.UDPConn
	listeners []net.Listener
	sem       chan struct{}

	// mu guards following.
	mu     sync.Mutex
	conns  map[*Conn]struct{}
	closed bool

	wg sync.WaitGroup
}

// Listen opens the sockets of a; Serve starts reading them.
func Listen(a Addrs) (*Server, error) {
	s := &Server{sem: make(chan struct{}, maxInFlight), conns: make(map[*Conn]struct{})}
	if a.UDP != "" {
		ua, err := net.ResolveUDPAddr("udp", a.UDP)
		if err != nil {
			return nil, err
		}
		if s.udp, err = net.ListenUDP("udp", ua); err != nil {
			return nil, err
		}
		// Room for bursts of updates from many hosts at once.
		s.udp.SetReadBuffer(4 << 20)
	}
	if a.TCP != "" {
		l, err := net.Listen("tcp", a.TCP)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.listeners = append(s.listeners, l)
	}
	if a.TLS != "" {
		l, err := tls.Listen("tcp", a.TLS, a.TLSConfig)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.listeners = append(s.listeners, l)
	}
	return s, nil
}

// UDPAddr is the UDP listener's address, nil if there is none.
func (s *Server) UDPAddr() net.Addr {
	if s.udp == nil {
		return nil
	}
	return s.udp.LocalAddr()
}

// StreamAddrs are the TCP and TLS listeners' addresses, in that order.
func (s *Server) StreamAddrs() []net.Addr {
	var out []net.Addr
	for _, l := range s.listeners {
		out = append(out, l.Addr())
	}
	return out
}

// WriteUDP sends one datagram from the UDP listener to any address: a
// message the client did not ask for, to the port it named for them.
func (s *Server) WriteUDP(b []byte, to netip.AddrPort) error {
	if s.udp == nil {
		return errors.New("rawdns: no UDP listener")
	}
	_, err := s.udp.WriteToUDPAddrPort(b, to)
	return err
}

// SetHandler makes h serve the messages from now on.
func (s *Server) SetHandler(h Handler) { s.handler.Store(&h) }

// Serve starts the listeners' goroutines; h serves until SetHandler
// replaces it.
func (s *Server) Serve(h Handler) {
	s.SetHandler(h)
	if s.udp != nil {
		s.wg.Add(1)
		go s.serveUDP()
	}
	for _, l := range s.listeners {
		s.wg.Add(1)
		go s.serveStream(l)
	}
}

// Close stops the listeners and connections and waits for the messages
// being served.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if s.udp != nil {
		s.udp.Close()
	}
	for _, l := range s.listeners {
		l.Close()
	}
	for _, c := range conns {
		c.c.Close()
	}
	s.wg.Wait()
	return nil
}

func (s *Server) serve(msg []byte, from *Source) { (*s.handler.Load())(msg, from) }

// serveUDP reads datagrams until the socket closes; each is served on a
// goroutine of its own, at most maxInFlight at once.
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
		src := &Source{Addr: netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), Net: "udp", udp: s.udp}
		s.sem <- struct{}{}
		s.wg.Add(1)
		go func() {
			defer func() { <-s.sem; s.wg.Done() }()
			s.serve(msg, src)
		}()
	}
}

// serveStream accepts TCP or TLS connections until the listener closes.
func (s *Server) serveStream(l net.Listener) {
	defer s.wg.Done()
	network := "tcp"
	if _, ok := l.Addr().(*net.TCPAddr); ok && isTLS(l) {
		network = "tls"
	}
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
		cn := &Conn{c: c}
		s.mu.Lock()
		if s.closed || len(s.conns) >= maxConns {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[cn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		src := &Source{Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), Net: network, conn: cn}
		go s.serveConn(cn, src)
	}
}

// isTLS tells a tls.Listen listener from a plain one.
func isTLS(l net.Listener) bool {
	_, plain := l.(*net.TCPListener)
	return !plain
}

// serveConn reads length-prefixed messages (RFC 1035 §4.2.2) from one
// connection and serves them in turn, so replies keep the requests' order.
func (s *Server) serveConn(c *Conn, src *Source) {
	defer s.wg.Done()
	idle := s.IdleTimeout
	if idle == 0 {
		idle = idleTimeout
	}
	err := ReadFramed(c.c, idle, func(msg []byte) { s.serve(msg, src) })
	c.c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if s.ConnClosed != nil {
		s.ConnClosed(c, err)
	}
}

// ReadFramed reads DNS messages from a TCP or TLS connection (RFC 1035
// §4.2.2: each led by its length in two octets) and hands each to fn,
// until the connection ends or is idle for idle. A TLS connection's
// handshake comes first, bounded like a write; its error is returned, for
// a log, and any other end of the connection returns nil.
func ReadFramed(c net.Conn, idle time.Duration, fn func(msg []byte)) error {
	if t, ok := c.(*tls.Conn); ok {
		t.SetDeadline(time.Now().Add(writeTimeout))
		if err := t.Handshake(); err != nil {
			return err
		}
		t.SetDeadline(time.Time{})
	}
	var hdr [2]byte
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return nil
		}
		msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return nil
		}
		fn(msg)
	}
}

// Conn is one TCP or TLS connection. Messages are written whole, each
// under wmu, so that replies and messages written unasked interleave
// whole.
type Conn struct {
	c   net.Conn
	wmu sync.Mutex
}

// Write sends one message on the connection, led by its length. It may
// be called at any time, from any goroutine; after Close it fails.
func (c *Conn) Write(b []byte) error {
	if len(b) > 0xFFFF {
		return errors.New("rawdns: message too long for TCP")
	}
	buf := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(buf, uint16(len(b)))
	copy(buf[2:], b)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.c.Write(buf)
	return err
}

// Close ends the connection; its messages being served finish, and
// ConnClosed follows.
func (c *Conn) Close() error { return c.c.Close() }
