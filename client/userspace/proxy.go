package userspace

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/tun/netstack"
)

const (
	// DefaultDialTimeout bounds a connection's set-up through the tunnel
	// when Proxy.DialTimeout is 0. A handshake with a peer that answers
	// takes a round trip or two; a peer that is gone never answers (the
	// tunnel drops packets to it, there is no ICMP), so this is how long a
	// client waits to learn that.
	DefaultDialTimeout = 15 * time.Second
	// HandshakeTimeout bounds how long a client of the proxy may take to
	// say where it wants to go.
	HandshakeTimeout = 30 * time.Second
)

// Why Proxy.DialContext fails; the proxies turn these into SOCKS reply
// codes and HTTP statuses.
var (
	// ErrNotInTunnel: the address is not an IPv6 unique local address, so
	// it is not in the tunnel's address space.
	ErrNotInTunnel = errors.New("not an address in the tunnel (IPv6 unique local address)")
	// ErrUnknownHost: Resolve does not know the name (or there is no Resolve).
	ErrUnknownHost = errors.New("unknown host")
	// ErrNotPeer: a ULA that Proxy.Peer does not know.
	ErrNotPeer = errors.New("no such host in the tunnel")
	// ErrRefused: the peer answered with a reset (nothing listens there).
	ErrRefused = errors.New("connection refused")
	// ErrUnreachable: the stack has no way to the address.
	ErrUnreachable = errors.New("host unreachable")
	// ErrTimeout: no answer within the dial timeout (the peer is down or
	// the tunnel to it is not up).
	ErrTimeout = errors.New("connection timed out")
)

// Proxy makes TCP connections into the tunnel for local applications: a
// SOCKS5 proxy (ServeSOCKS5) and an HTTP proxy (ServeHTTPProxy), both on a
// loopback listener, and DialContext for the daemon's own use.
//
// Only IPv6 unique local addresses are in the tunnel: IP literals are used
// as they are, names are resolved by Resolve, and anything else is refused
// without going near the network.
type Proxy struct {
	// Net is the stack to dial in, Device.Net.
	Net *netstack.Net
	// Resolve maps a host name (desktop.alice.members.example.com) to the
	// peer's ULA. It is called for every name that is not an IP literal;
	// nil makes every name unknown.
	Resolve func(ctx context.Context, host string) (netip.Addr, error)
	// Peer, if not nil, says whether a ULA is one of the user's hosts.
	// Others fail at once (ErrNotPeer) instead of after DialTimeout: the
	// tunnel drops packets to addresses it has no peer for, silently.
	Peer func(netip.Addr) bool
	// DialTimeout bounds a connection's set-up; 0 means DefaultDialTimeout.
	DialTimeout time.Duration
	// Logf logs failed requests at debug level; nil discards.
	Logf func(format string, args ...any)
}

func (p *Proxy) logf(format string, args ...any) {
	if p.Logf != nil {
		p.Logf(format, args...)
	}
}

// DialContext connects to address ("host:port") in the tunnel. network
// must be "tcp" or "tcp6". The errors wrap ErrNotInTunnel, ErrUnknownHost,
// ErrNotPeer, ErrRefused, ErrUnreachable, ErrTimeout or ctx's error.
func (p *Proxy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if network != "tcp" && network != "tcp6" {
		return nil, fmt.Errorf("userspace: dial %s %s: only TCP goes through the proxy", network, address)
	}
	host, port, err := splitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("userspace: dial %s: %w", address, err)
	}
	return p.dial(ctx, host, port)
}

func splitHostPort(address string) (string, uint16, error) {
	host, ps, err := net.SplitHostPort(address)
	if err != nil {
		return "", 0, err
	}
	port, err := net.LookupPort("tcp", ps)
	if err != nil {
		return "", 0, err
	}
	if host == "" || port == 0 {
		return "", 0, fmt.Errorf("no host or port in %q", address)
	}
	return host, uint16(port), nil
}

// dial resolves host (a name or an IP literal) and connects to it.
func (p *Proxy) dial(ctx context.Context, host string, port uint16) (net.Conn, error) {
	a, err := p.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	return p.dialAddr(ctx, a, port)
}

func (p *Proxy) resolve(ctx context.Context, host string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a, nil
	}
	if p.Resolve == nil {
		return netip.Addr{}, fmt.Errorf("userspace: %q: %w", host, ErrUnknownHost)
	}
	a, err := p.Resolve(ctx, host)
	if err != nil {
		if ctx.Err() != nil {
			return netip.Addr{}, ctx.Err()
		}
		return netip.Addr{}, fmt.Errorf("userspace: %q: %w: %v", host, ErrUnknownHost, err)
	}
	return a, nil
}

func (p *Proxy) dialAddr(ctx context.Context, a netip.Addr, port uint16) (net.Conn, error) {
	ap := netip.AddrPortFrom(a, port)
	if !isULA(a) {
		return nil, fmt.Errorf("userspace: %v: %w", a, ErrNotInTunnel)
	}
	if p.Peer != nil && !p.Peer(a) {
		return nil, fmt.Errorf("userspace: %v: %w", a, ErrNotPeer)
	}
	timeout := p.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := p.Net.DialContextTCPAddrPort(dctx, ap)
	if err == nil {
		return c, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	// gonet reports the stack's errors by their text (tcpip.Error.String).
	var why error
	switch msg := err.Error(); {
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "timed out"):
		why = ErrTimeout
	case strings.Contains(msg, "refused"):
		why = ErrRefused
	case strings.Contains(msg, "unreachable") || strings.Contains(msg, "no route"):
		why = ErrUnreachable
	default:
		return nil, fmt.Errorf("userspace: dial [%v]:%d: %w", a, port, err)
	}
	return nil, fmt.Errorf("userspace: dial [%v]:%d: %w (%v)", a, port, why, err)
}

// checkLoopback refuses a TCP listener on anything but a loopback
// address: the proxies ask for no credentials and reach all the user's
// hosts.
func checkLoopback(ln net.Listener) error {
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
		return fmt.Errorf("userspace: proxy listener %v is not on a loopback address", a)
	}
	return nil
}

// serve accepts on ln until ctx ends or ln fails, running handle on a
// goroutine per connection; on return ln and every connection in conns
// are closed and the handlers have returned. The handlers add the
// connections they dial to conns.
func serve(ctx context.Context, ln net.Listener, logf func(string, ...any), handle func(ctx context.Context, c net.Conn, conns *connSet)) error {
	var conns connSet
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close(); conns.closeAll() })
	defer func() {
		stop()
		ln.Close()
		conns.closeAll()
		wg.Wait()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			logf("userspace: accept: %v; retrying in %v", err, delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		if !conns.add(c) {
			c.Close()
			return nil
		}
		wg.Go(func() {
			defer conns.remove(c)
			defer c.Close()
			handle(ctx, c, &conns)
		})
	}
}

// relay tracks out in conns and splices c and out; it closes both.
func relay(c, out net.Conn, conns *connSet) {
	if !conns.add(out) {
		out.Close()
		return
	}
	defer conns.remove(out)
	c.SetDeadline(time.Time{})
	splice(c, out)
}
