package rawdns

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// echo answers every message with its own octets, prefixed by tag.
func echo(tag byte) Handler {
	return func(msg []byte, from *Source) { from.Reply(append([]byte{tag}, msg...)) }
}

func TestUDPAndTCP(t *testing.T) {
	a := Addrs{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"}
	s, err := Listen(a)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Serve(echo('a'))

	// A datagram of 60,000 octets is read whole.
	u, err := net.Dial("udp", s.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	big := bytes.Repeat([]byte{7}, 60000)
	u.Write(big)
	u.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 65535)
	n, err := u.Read(buf)
	if err != nil || n != len(big)+1 || buf[0] != 'a' || !bytes.Equal(buf[1:n], big) {
		t.Fatalf("UDP echo: %d octets, %v", n, err)
	}

	// Messages on one TCP connection are answered in order; the handler
	// can be swapped while the connection is open.
	c, err := net.Dial("tcp", s.StreamAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	exchange := func(msg []byte) []byte {
		t.Helper()
		c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...))
		var hdr [2]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatal(err)
		}
		out := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for i := range 3 {
		if out := exchange([]byte{byte(i)}); !bytes.Equal(out, []byte{'a', byte(i)}) {
			t.Fatalf("TCP echo %d: %v", i, out)
		}
	}
	s.SetHandler(echo('b'))
	if out := exchange([]byte{9}); !bytes.Equal(out, []byte{'b', 9}) {
		t.Fatalf("after SetHandler: %v", out)
	}
}

// TestAcquireShares: a second Acquire of the same addresses (a reload)
// keeps the sockets and installs its handler; the last Release closes them.
func TestAcquireShares(t *testing.T) {
	probe, _ := net.ListenPacket("udp", "127.0.0.1:0")
	addr := probe.LocalAddr().String()
	probe.Close()
	a := Addrs{UDP: addr}
	s1, running, err := Acquire(a, echo('1'))
	if err != nil || running {
		t.Fatalf("first Acquire: running %t, %v", running, err)
	}
	s2, running, err := Acquire(a, echo('2'))
	if err != nil || !running || s2 != s1 {
		t.Fatalf("second Acquire: same server %t, running %t, %v", s2 == s1, running, err)
	}
	u, _ := net.Dial("udp", addr)
	defer u.Close()
	u.SetReadDeadline(time.Now().Add(2 * time.Second))
	u.Write([]byte{0})
	buf := make([]byte, 16)
	if n, err := u.Read(buf); err != nil || n != 2 || buf[0] != '2' {
		t.Fatalf("served by %q, %v; want the newest handler", buf[:n], err)
	}
	Release(a)
	if _, err := net.ListenPacket("udp", addr); err == nil {
		t.Fatal("the socket closed while acquired once more")
	}
	Release(a)
	p, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("the last Release left the socket open: %v", err)
	}
	p.Close()
}

// TestConnHandle: a handler that keeps state per connection sees one Conn
// for all of a connection's messages, none for datagrams, may write to the
// connection unasked and to any UDP address, and hears when the connection
// ends, after its last message.
func TestConnHandle(t *testing.T) {
	s, err := Listen(Addrs{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.IdleTimeout = time.Hour // longer than the test: the client ends it
	conns := make(chan *Conn, 8)
	closed := make(chan *Conn, 1)
	s.ConnClosed = func(c *Conn, err error) { closed <- c }
	s.Serve(func(msg []byte, from *Source) { conns <- from.Conn() })

	u, _ := net.Dial("udp", s.UDPAddr().String())
	defer u.Close()
	u.Write([]byte{1})
	if c := <-conns; c != nil {
		t.Errorf("a datagram has connection %p", c)
	}

	c, err := net.Dial("tcp", s.StreamAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0, 1, 'a', 0, 1, 'b'})
	first, second := <-conns, <-conns
	if first == nil || first != second {
		t.Fatalf("two messages of one connection: %p and %p, want one Conn", first, second)
	}

	// Written unasked, framed like a reply.
	if err := first.Write([]byte("event")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, 7)
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, []byte("\x00\x05event")) {
		t.Fatalf("unasked message: %q, %v", got, err)
	}

	// A datagram to an address that sent nothing.
	to, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer to.Close()
	if err := s.WriteUDP([]byte("push"), to.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	to.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	if n, _, err := to.ReadFrom(buf); err != nil || string(buf[:n]) != "push" {
		t.Fatalf("WriteUDP: %q, %v", buf[:n], err)
	}

	c.Close()
	select {
	case gone := <-closed:
		if gone != first {
			t.Errorf("ConnClosed for %p, want %p", gone, first)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no ConnClosed after the client closed")
	}
	if err := first.Write([]byte("late")); err == nil {
		t.Error("a write after the connection ended succeeded")
	}
}
