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
