package userspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// SOCKS5 (RFC 1928) constants.
const (
	socksVersion = 5

	methodNoAuth       = 0x00
	methodNoAcceptable = 0xff

	cmdConnect = 1

	atypIPv4   = 1
	atypDomain = 3
	atypIPv6   = 4
)

// SOCKS5 reply codes (RFC 1928 §6).
const (
	RepSucceeded           = 0x00
	RepGeneralFailure      = 0x01
	RepNotAllowed          = 0x02 // connection not allowed by ruleset
	RepNetworkUnreachable  = 0x03
	RepHostUnreachable     = 0x04
	RepConnectionRefused   = 0x05
	RepTTLExpired          = 0x06
	RepCommandNotSupported = 0x07
	RepAddrNotSupported    = 0x08
)

// socksRequest is a parsed SOCKS5 request: CMD, and DST.ADDR as either an
// IP address (ATYP 1 or 4) or a name (ATYP 3), and DST.PORT.
type socksRequest struct {
	cmd  byte
	atyp byte
	addr netip.Addr // ATYP 1 or 4
	host string     // ATYP 3
	port uint16
}

// socksError is a request that gets a reply with code rep, then the
// connection is closed.
type socksError struct {
	rep byte
	msg string
}

func (e *socksError) Error() string { return fmt.Sprintf("socks5: %s (reply %d)", e.msg, e.rep) }

// errSOCKSVersion is a client that does not speak SOCKS5: it gets no reply.
var errSOCKSVersion = errors.New("socks5: not SOCKS version 5")

// readGreeting reads the version identifier/method selection message
// (RFC 1928 §3) and reports whether it offers "no authentication".
func readGreeting(r io.Reader) (noAuth bool, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return false, err
	}
	if h[0] != socksVersion {
		return false, errSOCKSVersion
	}
	var methods [255]byte
	m := methods[:h[1]]
	if _, err := io.ReadFull(r, m); err != nil {
		return false, err
	}
	for _, x := range m {
		if x == methodNoAuth {
			return true, nil
		}
	}
	return false, nil
}

// readRequest reads a request (RFC 1928 §4): VER CMD RSV ATYP DST.ADDR
// DST.PORT. It reads exactly the request's octets, so that whatever the
// client sent after it is left for the relay. An error is an I/O error,
// errSOCKSVersion, or a *socksError for a request to answer with a
// failure.
func readRequest(r io.Reader) (socksRequest, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return socksRequest{}, err
	}
	if h[0] != socksVersion {
		return socksRequest{}, errSOCKSVersion
	}
	req := socksRequest{cmd: h[1], atyp: h[3]}
	// RSV (h[2]) must be 0, but being liberal here harms no one.
	var buf [255]byte
	switch req.atyp {
	case atypIPv4:
		if _, err := io.ReadFull(r, buf[:4]); err != nil {
			return socksRequest{}, err
		}
		req.addr = netip.AddrFrom4([4]byte(buf[:4]))
	case atypIPv6:
		if _, err := io.ReadFull(r, buf[:16]); err != nil {
			return socksRequest{}, err
		}
		req.addr = netip.AddrFrom16([16]byte(buf[:16]))
	case atypDomain:
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return socksRequest{}, err
		}
		name := buf[:buf[0]]
		if _, err := io.ReadFull(r, name); err != nil {
			return socksRequest{}, err
		}
		if len(name) == 0 {
			return socksRequest{}, &socksError{RepGeneralFailure, "empty domain name"}
		}
		req.host = string(name)
	default:
		// The length of DST.ADDR is unknown: nothing more can be read.
		return socksRequest{}, &socksError{RepAddrNotSupported, fmt.Sprintf("address type %d", req.atyp)}
	}
	var p [2]byte
	if _, err := io.ReadFull(r, p[:]); err != nil {
		return socksRequest{}, err
	}
	req.port = uint16(p[0])<<8 | uint16(p[1])
	if req.cmd != cmdConnect {
		return req, &socksError{RepCommandNotSupported, fmt.Sprintf("command %d", req.cmd)}
	}
	return req, nil
}

// appendReply appends a reply (RFC 1928 §6) with code rep and BND.ADDR,
// BND.PORT bound (IPv4 0.0.0.0:0 if not valid).
func appendReply(b []byte, rep byte, bound netip.AddrPort) []byte {
	b = append(b, socksVersion, rep, 0)
	a := bound.Addr()
	if a.Is6() && !a.Is4In6() {
		b = append(b, atypIPv6)
		b = append(b, a.AsSlice()...)
	} else {
		b = append(b, atypIPv4)
		a4 := a.Unmap()
		if !a4.Is4() {
			a4 = netip.IPv4Unspecified()
		}
		b = append(b, a4.AsSlice()...)
	}
	return append(b, byte(bound.Port()>>8), byte(bound.Port()))
}

// socksReplyCode is the reply for a failed dial.
func socksReplyCode(err error) byte {
	switch {
	case errors.Is(err, ErrNotInTunnel):
		return RepNotAllowed
	case errors.Is(err, ErrUnknownHost), errors.Is(err, ErrNotPeer),
		errors.Is(err, ErrUnreachable), errors.Is(err, ErrTimeout):
		return RepHostUnreachable
	case errors.Is(err, ErrRefused):
		return RepConnectionRefused
	}
	return RepGeneralFailure
}

// ServeSOCKS5 serves SOCKS5 (RFC 1928: CONNECT, no authentication; names
// are sent to the proxy and resolved by Resolve, as with curl's
// --socks5-hostname or socks5h:// URLs) on ln until ctx ends, then closes
// ln and every connection and returns nil once the handlers are done. ln
// must be on a loopback address.
//
// Failures get these replies:
//
//   - an IPv4 address (ATYP 1): 8, address type not supported: the tunnel
//     carries IPv6 only;
//   - an IPv6 address outside fc00::/7, or a name resolving to one: 2,
//     connection not allowed by ruleset;
//   - a name Resolve does not know, a ULA that is no peer, or a peer that
//     does not answer in time: 4, host unreachable;
//   - a peer with nothing listening on the port: 5, connection refused;
//   - a command other than CONNECT: 7; an unknown address type: 8.
func (p *Proxy) ServeSOCKS5(ctx context.Context, ln net.Listener) error {
	if err := checkLoopback(ln); err != nil {
		return err
	}
	return serve(ctx, ln, p.logf, p.handleSOCKS)
}

func (p *Proxy) handleSOCKS(ctx context.Context, c net.Conn, conns *connSet) {
	c.SetDeadline(time.Now().Add(HandshakeTimeout))
	noAuth, err := readGreeting(c)
	if err != nil {
		p.logf("socks5 %v: %v", c.RemoteAddr(), err)
		return
	}
	if !noAuth {
		c.Write([]byte{socksVersion, methodNoAcceptable})
		p.logf("socks5 %v: client offers no method without authentication", c.RemoteAddr())
		return
	}
	if _, err := c.Write([]byte{socksVersion, methodNoAuth}); err != nil {
		return
	}
	req, err := readRequest(c)
	fail := func(rep byte, err error) {
		c.Write(appendReply(nil, rep, netip.AddrPort{}))
		p.logf("socks5 %v: %v", c.RemoteAddr(), err)
	}
	var se *socksError
	switch {
	case errors.As(err, &se):
		fail(se.rep, err)
		return
	case err != nil:
		p.logf("socks5 %v: %v", c.RemoteAddr(), err)
		return
	case req.atyp == atypIPv4:
		fail(RepAddrNotSupported, fmt.Errorf("%v: %w", req.addr, ErrNotInTunnel))
		return
	}
	var out net.Conn
	if req.atyp == atypDomain {
		out, err = p.dial(ctx, req.host, req.port)
	} else {
		out, err = p.dialAddr(ctx, req.addr, req.port)
	}
	if err != nil {
		fail(socksReplyCode(err), err)
		return
	}
	var bound netip.AddrPort
	if a, ok := out.LocalAddr().(*net.TCPAddr); ok {
		bound = a.AddrPort()
	}
	if _, err := c.Write(appendReply(nil, RepSucceeded, bound)); err != nil {
		out.Close()
		return
	}
	relay(c, out, conns)
}
