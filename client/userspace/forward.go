package userspace

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// LocalDialTimeout bounds how long a Forwarder waits for the local
// service to accept a connection.
const LocalDialTimeout = 10 * time.Second

// Forwarder accepts TCP connections on a port of the device's ULA and
// relays each to a local address. Peers reach a rootless host only this
// way.
type Forwarder struct {
	dev  *Device
	ln   net.Listener
	to   string
	addr netip.AddrPort

	conns     connSet
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Forward listens on port of the device's ULA, in the stack, and relays
// every connection to the local address to ("127.0.0.1:22"), until the
// Forwarder or the device is closed. Port 0 picks a free port (see Addr).
//
// The local service sees the connection come from the local host, not from
// the peer: a service that authorizes by address must not trust it.
func (d *Device) Forward(port uint16, to string) (*Forwarder, error) {
	if _, _, err := net.SplitHostPort(to); err != nil {
		return nil, fmt.Errorf("userspace: forward to %q: %w", to, err)
	}
	ln, err := d.net.ListenTCPAddrPort(netip.AddrPortFrom(d.ula, port))
	if err != nil {
		return nil, fmt.Errorf("userspace: listen on [%v]:%d: %w", d.ula, port, err)
	}
	f := &Forwarder{dev: d, ln: ln, to: to, addr: netip.AddrPortFrom(d.ula, port)}
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		f.addr = netip.AddrPortFrom(d.ula, uint16(a.Port))
	}
	d.fwdMu.Lock()
	if d.fwds == nil {
		d.fwdMu.Unlock()
		ln.Close()
		return nil, fmt.Errorf("userspace: forward: %w", net.ErrClosed)
	}
	d.fwds[f] = struct{}{}
	d.fwdMu.Unlock()
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// Addr is where peers connect: the ULA and the port.
func (f *Forwarder) Addr() netip.AddrPort { return f.addr }

func (f *Forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return // closed: gonet's listener fails only then
		}
		if !f.conns.add(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.conns.remove(c)
			l, err := net.DialTimeout("tcp", f.to, LocalDialTimeout)
			if err != nil {
				f.dev.logf("userspace: forward %v from %v to %s: %v", f.addr, c.RemoteAddr(), f.to, err)
				c.Close()
				return
			}
			if !f.conns.add(l) {
				c.Close()
				l.Close()
				return
			}
			defer f.conns.remove(l)
			splice(c, l)
		}()
	}
}

// Close stops listening, ends the connections being relayed and waits for
// their goroutines.
func (f *Forwarder) Close() error {
	f.closeOnce.Do(func() {
		f.dev.fwdMu.Lock()
		if f.dev.fwds != nil {
			delete(f.dev.fwds, f)
		}
		f.dev.fwdMu.Unlock()
		f.closeErr = f.ln.Close()
		f.conns.closeAll()
		f.wg.Wait()
	})
	return f.closeErr
}

// connSet tracks live connections so that a shutdown can end them.
type connSet struct {
	mu     sync.Mutex
	m      map[net.Conn]struct{}
	closed bool
}

// add tracks c; it reports false after closeAll.
func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.m == nil {
		s.m = make(map[net.Conn]struct{})
	}
	s.m[c] = struct{}{}
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

// closeAll closes every tracked connection, and any added later.
func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	m := s.m
	s.m = nil
	s.mu.Unlock()
	for c := range m {
		c.Close()
	}
}

// splice copies both ways between a and b until both directions end, then
// closes both. A clean end of one direction is passed on as a half-close
// (both gonet's and net's TCP connections have CloseWrite); an error in
// either aborts both.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		cw, ok := dst.(interface{ CloseWrite() error })
		if err != nil || !ok || cw.CloseWrite() != nil {
			a.Close()
			b.Close()
		}
	}
	wg.Go(func() { cp(a, b) })
	wg.Go(func() { cp(b, a) })
	wg.Wait()
	a.Close()
	b.Close()
}
