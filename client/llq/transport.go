package llq

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// transport moves whole DNS messages to and from the server.
type transport interface {
	// read returns the next message from the server, in a buffer of its
	// own. Only the reader calls it.
	read() ([]byte, error)
	// write sends one message to the server; it is safe for concurrent use.
	write(b []byte) error
	close() error
	localAddr() netip.AddrPort
}

// udpTransport is one unconnected UDP socket that hears only the server's
// address and port.
type udpTransport struct {
	conn   *net.UDPConn
	server netip.AddrPort // unmapped
	buf    []byte         // the reader's
}

func dialUDP(ctx context.Context, server, local string) (*udpTransport, error) {
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return nil, fmt.Errorf("llq: server %q: %w", server, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("llq: server %q: %w", server, err)
	}
	p, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return nil, fmt.Errorf("llq: server %q: %w", server, err)
	}
	addr := netip.AddrPortFrom(ips[0].Unmap(), uint16(p))
	network := "udp"
	if local == "" {
		local = ":0"
		network = "udp6"
		if addr.Addr().Is4() {
			network = "udp4"
		}
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, network, local)
	if err != nil {
		return nil, fmt.Errorf("llq: %w", err)
	}
	return &udpTransport{conn: pc.(*net.UDPConn), server: addr, buf: make([]byte, 65535)}, nil
}

func (t *udpTransport) read() ([]byte, error) {
	errs := 0
	for {
		n, from, err := t.conn.ReadFromUDPAddrPort(t.buf)
		if err != nil {
			// Unconnected UDP sockets hardly ever fail; a few in a row
			// mean the socket is gone.
			if errs++; errors.Is(err, net.ErrClosed) || errs >= maxReadErrors {
				return nil, err
			}
			continue
		}
		errs = 0
		if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != t.server {
			continue
		}
		return append([]byte(nil), t.buf[:n]...), nil
	}
}

func (t *udpTransport) write(b []byte) error {
	_, err := t.conn.WriteToUDPAddrPort(b, t.server)
	return err
}

func (t *udpTransport) close() error { return t.conn.Close() }

func (t *udpTransport) localAddr() netip.AddrPort {
	return t.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// streamTransport is a TCP or TLS connection carrying messages with the
// two-octet length prefix of RFC 1035 §4.2.2.
type streamTransport struct {
	conn net.Conn
	mu   sync.Mutex // serializes writes
}

func dialStream(ctx context.Context, network, server, local string, tlsConfig *tls.Config) (*streamTransport, error) {
	d := &net.Dialer{}
	if local != "" {
		a, err := net.ResolveTCPAddr("tcp", local)
		if err != nil {
			return nil, fmt.Errorf("llq: local address: %w", err)
		}
		d.LocalAddr = a
	}
	var (
		conn net.Conn
		err  error
	)
	if network == "tcp-tls" {
		conn, err = (&tls.Dialer{NetDialer: d, Config: tlsConfig}).DialContext(ctx, "tcp", server)
	} else {
		conn, err = d.DialContext(ctx, "tcp", server)
	}
	if err != nil {
		return nil, fmt.Errorf("llq: %w", err)
	}
	return &streamTransport{conn: conn}, nil
}

func (t *streamTransport) read() ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(t.conn, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(t.conn, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

func (t *streamTransport) write(b []byte) error {
	if len(b) > 0xFFFF {
		return fmt.Errorf("llq: message of %d octets is too long", len(b))
	}
	frame := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(b)), uint16(len(b)))
	frame = append(frame, b...)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := t.conn.Write(frame)
	return err
}

func (t *streamTransport) close() error { return t.conn.Close() }

func (t *streamTransport) localAddr() netip.AddrPort {
	if a, ok := t.conn.LocalAddr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}
