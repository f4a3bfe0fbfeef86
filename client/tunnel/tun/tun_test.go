//go:build linux

package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/openbtmm/btmm/client/tunnel/esp"
)

var (
	localULA = netip.MustParseAddr("fd00:b7bb::1")
	peerULA  = netip.MustParseAddr("fd00:b7bb::2")
	otherULA = netip.MustParseAddr("fdaa:1::3")
)

func TestInnerMTU(t *testing.T) {
	if DefaultMTU != 1432 || InnerMTU(DefaultPathMTU) != 1432 {
		t.Fatalf("DefaultMTU = %d, InnerMTU(1500) = %d, want 1432", DefaultMTU, InnerMTU(1500))
	}
	if Overhead != 65 {
		t.Fatalf("Overhead = %d, want 65", Overhead)
	}
	for _, c := range []struct{ path, want int }{
		{1500, 1432}, {1492, 1424}, {1400, 1328}, {1345, 1280}, {1280, 1280}, {576, 1280}, {9000, 8928},
	} {
		if got := InnerMTU(c.path); got != c.want {
			t.Errorf("InnerMTU(%d) = %d, want %d", c.path, got, c.want)
		}
	}
	// Every inner packet up to the MTU, whatever its padding, fits the path.
	for path := MinMTU + Overhead; path <= 9000; path++ {
		mtu := InnerMTU(path)
		for n := mtu - 3; n <= mtu; n++ {
			if outer := OuterIPv4HeaderLen + UDPHeaderLen + esp.SealedLen(n); outer > path {
				t.Fatalf("path %d: inner %d seals to %d outer octets", path, n, outer)
			}
		}
	}
}

func TestCheckULA(t *testing.T) {
	for _, s := range []string{"2001:db8::1", "10.0.0.1", "::ffff:10.0.0.1", "fe80::1", "fd00::1%eth0"} {
		if checkULA(netip.MustParseAddr(s)) == nil {
			t.Errorf("checkULA(%s) accepted", s)
		}
	}
	if err := checkULA(localULA); err != nil {
		t.Errorf("checkULA(%v): %v", localULA, err)
	}
}

// skipOrFail skips a test that needs privileges this run lacks, unless CI=1
// says they are meant to be there.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+" (set CI=1 to make this a failure)", args...)
}

// inNetns moves the test's goroutine, locked to its OS thread, into a fresh
// network namespace with loopback up, and moves it back on cleanup. Sockets
// and devices made by this goroutine live in the namespace; they and it
// vanish once the last reference closes, so nothing is left on the host.
func inNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for a network namespace and a TUN device")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		skipOrFail(t, "no TUN support: %v", err)
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("netns.Get: %v", err)
	}
	ns, err := netns.New() // also switches this thread into it
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		skipOrFail(t, "cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime discards a thread whose
			// goroutine exits locked, so no other test lands in ns.
			t.Errorf("restoring the network namespace: %v", err)
		} else {
			runtime.UnlockOSThread()
		}
		ns.Close()
		orig.Close()
	})
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("loopback up: %v", err)
	}
}

func create(t *testing.T, name string, mtu int) *Device {
	t.Helper()
	d, err := Create(name, localULA, mtu)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestCreate(t *testing.T) {
	inNetns(t)
	for _, c := range []struct {
		name, want   string
		mtu, wantMTU int
	}{
		{"", "btmm", 0, DefaultMTU},
		{"btmmtest7", "btmmtest7", 1400, 1400},
	} {
		d := create(t, c.name, c.mtu)
		if !strings.HasPrefix(d.Name(), c.want) {
			t.Errorf("Name() = %q, want prefix %q", d.Name(), c.want)
		}
		if d.MTU() != c.wantMTU || d.ULA() != localULA {
			t.Errorf("MTU() = %d, ULA() = %v", d.MTU(), d.ULA())
		}
		if d.BatchSize() < 1 {
			t.Errorf("BatchSize() = %d", d.BatchSize())
		}
		t.Logf("%s: batch size %d", d.Name(), d.BatchSize())
		link, err := netlink.LinkByName(d.Name())
		if err != nil {
			t.Fatalf("LinkByName(%s): %v", d.Name(), err)
		}
		a := link.Attrs()
		if a.MTU != c.wantMTU {
			t.Errorf("%s: kernel MTU %d, want %d", d.Name(), a.MTU, c.wantMTU)
		}
		if a.Flags&net.FlagUp == 0 {
			t.Errorf("%s: not up (flags %v)", d.Name(), a.Flags)
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) != 1 {
			t.Errorf("%s: addresses %v, want only %v/128", d.Name(), addrs, localULA)
		}
		for _, ad := range addrs {
			ones, bits := ad.Mask.Size()
			got, _ := netip.AddrFromSlice(ad.IP)
			if got != localULA || ones != 128 || bits != 128 {
				t.Errorf("%s: address %v, want %v/128", d.Name(), ad.IPNet, localULA)
			}
			if ad.Flags&unix.IFA_F_NOPREFIXROUTE == 0 {
				t.Errorf("%s: address flags %#x lack noprefixroute", d.Name(), ad.Flags)
			}
		}
	}
	if _, err := Create("", netip.MustParseAddr("2001:db8::1"), 0); err == nil {
		t.Error("Create accepted a global address")
	}
	if _, err := Create("", localULA, 1279); err == nil {
		t.Error("Create accepted MTU 1279")
	}
}

// peerRoutes lists the main-table routes to exactly peer/128.
func peerRoutes(t *testing.T, peer netip.Addr) []netlink.Route {
	t.Helper()
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V6,
		&netlink.Route{Dst: hostNet(peer), Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatalf("RouteListFiltered: %v", err)
	}
	return rs
}

func TestPeerRoutes(t *testing.T) {
	inNetns(t)
	d := create(t, "", 0)
	if rs := peerRoutes(t, localULA); len(rs) != 0 {
		t.Errorf("own ULA has a main-table route (noprefixroute?): %v", rs)
	}
	for range 2 { // the second AddPeer must be a no-op
		if err := d.AddPeer(peerULA); err != nil {
			t.Fatalf("AddPeer: %v", err)
		}
	}
	if err := d.AddPeer(otherULA); err != nil {
		t.Fatalf("AddPeer: %v", err)
	}
	for _, p := range []netip.Addr{peerULA, otherULA} {
		rs := peerRoutes(t, p)
		if len(rs) != 1 || rs[0].LinkIndex != d.index {
			t.Fatalf("routes to %v: %v, want one via %s (index %d)", p, rs, d.Name(), d.index)
		}
	}
	for range 2 { // removing a missing route is fine too
		if err := d.RemovePeer(peerULA); err != nil {
			t.Fatalf("RemovePeer: %v", err)
		}
	}
	if rs := peerRoutes(t, peerULA); len(rs) != 0 {
		t.Errorf("routes to %v after RemovePeer: %v", peerULA, rs)
	}
	if rs := peerRoutes(t, otherULA); len(rs) != 1 {
		t.Errorf("routes to %v after removing another peer: %v", otherULA, rs)
	}
	for _, bad := range []string{"2001:db8::2", "10.1.2.3", localULA.String()} {
		if d.AddPeer(netip.MustParseAddr(bad)) == nil {
			t.Errorf("AddPeer(%s) accepted", bad)
		}
	}
}

type batch struct {
	pkts [][]byte
	err  error
}

// reader reads d until it fails, sending copies of each batch's packets. It
// also checks Read's contract: headroom untouched, packets within the MTU.
func reader(t *testing.T, d *Device) <-chan batch {
	ch := make(chan batch, 64)
	bufs := make([][]byte, d.BatchSize())
	sizes := make([]int, len(bufs))
	for i := range bufs {
		bufs[i] = make([]byte, BufferLen(d.MTU()))
	}
	go func() {
		defer close(ch)
		for {
			for i := range bufs {
				copy(bufs[i][:Offset], bytes.Repeat([]byte{0xaa}, Offset))
			}
			n, err := d.Read(bufs, sizes)
			var b batch
			for i := range n {
				if !bytes.Equal(bufs[i][:Offset], bytes.Repeat([]byte{0xaa}, Offset)) {
					b.err = errors.New("Read wrote into the headroom")
				}
				if sizes[i] > d.MTU() {
					b.err = errors.New("Read returned a packet over the MTU")
				}
				b.pkts = append(b.pkts, bytes.Clone(bufs[i][Offset:Offset+sizes[i]]))
			}
			if err != nil && b.err == nil {
				b.err = err
			}
			ch <- b
			if err != nil && !errors.Is(err, ErrTooManySegments) {
				return
			}
		}
	}()
	return ch
}

// udp6 is a parsed IPv6/UDP packet.
type udp6 struct {
	src, dst         netip.Addr
	srcPort, dstPort uint16
	payload          []byte
}

func parseUDP6(p []byte) (udp6, bool) {
	if len(p) < 48 || p[0]>>4 != 6 || p[6] != unix.IPPROTO_UDP ||
		int(binary.BigEndian.Uint16(p[4:])) != len(p)-40 {
		return udp6{}, false
	}
	u := p[40:]
	if int(binary.BigEndian.Uint16(u[4:])) != len(u) || checksum(p[8:24], p[24:40], u) != 0 {
		return udp6{}, false
	}
	return udp6{
		src:     netip.AddrFrom16([16]byte(p[8:24])),
		dst:     netip.AddrFrom16([16]byte(p[24:40])),
		srcPort: binary.BigEndian.Uint16(u[0:]),
		dstPort: binary.BigEndian.Uint16(u[2:]),
		payload: u[8:],
	}, true
}

// checksum is the Internet checksum of an IPv6 pseudo-header and UDP
// segment u (RFC 8200 §8.1); 0 when u's checksum field is right.
func checksum(src, dst, u []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for len(b) >= 2 {
			sum += uint32(binary.BigEndian.Uint16(b))
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	add(src)
	add(dst)
	sum += uint32(len(u)) + unix.IPPROTO_UDP
	add(u)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// appendUDP6 appends an IPv6/UDP packet to b.
func appendUDP6(b []byte, u udp6) []byte {
	n := 8 + len(u.payload)
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = append(b, unix.IPPROTO_UDP, 64)
	b = append(b, u.src.AsSlice()...)
	b = append(b, u.dst.AsSlice()...)
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, u.srcPort)
	b = binary.BigEndian.AppendUint16(b, u.dstPort)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = append(b, 0, 0)
	b = append(b, u.payload...)
	c := checksum(u.src.AsSlice(), u.dst.AsSlice(), b[start:])
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[start+6:], c)
	return b
}

// expect collects UDP packets from ch to dst:port until want arrived,
// skipping unrelated traffic (MLD and such).
func expect(t *testing.T, ch <-chan batch, dst netip.AddrPort, want [][]byte) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	got := 0
	for got < len(want) {
		select {
		case b, ok := <-ch:
			if !ok {
				t.Fatal("reader stopped")
			}
			if b.err != nil {
				t.Fatalf("Read: %v", b.err)
			}
			for _, p := range b.pkts {
				u, ok := parseUDP6(p)
				if !ok || u.dst != dst.Addr() || u.dstPort != dst.Port() {
					t.Logf("skipping %d-octet packet % x…", len(p), p[:min(len(p), 8)])
					continue
				}
				if u.src != localULA {
					t.Errorf("source %v, want %v", u.src, localULA)
				}
				if got >= len(want) || !bytes.Equal(u.payload, want[got]) {
					t.Fatalf("packet %d: payload %q, want %q", got, u.payload, want[min(got, len(want)-1)])
				}
				got++
			}
			if len(b.pkts) > 1 {
				t.Logf("one Read returned %d packets", len(b.pkts))
			}
		case <-timeout:
			t.Fatalf("got %d of %d packets to %v", got, len(want), dst)
		}
	}
}

func TestReadUDP(t *testing.T) {
	inNetns(t)
	d := create(t, "", 0)
	if err := d.AddPeer(peerULA); err != nil {
		t.Fatal(err)
	}
	ch := reader(t, d)
	dst := netip.AddrPortFrom(peerULA, 5353)
	c, err := net.DialUDP("udp6", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := []byte("hello, peer")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, dst, [][]byte{msg})

	// A UDP GSO send: with USO on, the kernel hands the TUN one
	// super-packet and Read must split it; without, the kernel splits it.
	// Either way three MTU-sized datagrams must come out.
	seg := d.MTU() - 48
	var want [][]byte
	var all []byte
	for i := range 3 {
		p := bytes.Repeat([]byte{byte('a' + i)}, seg)
		want = append(want, p)
		all = append(all, p...)
	}
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(seg))
	if _, _, err := c.WriteMsgUDP(all, oob, nil); err != nil {
		t.Skipf("UDP GSO send: %v", err)
	}
	expect(t, ch, dst, want)
}

func TestWriteUDP(t *testing.T) {
	inNetns(t)
	d := create(t, "", 0)
	ln, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(localULA, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.LocalAddr().(*net.UDPAddr).Port)

	// A batch of one flow (a GRO candidate) and one packet of another.
	var bufs [][]byte
	var want []string
	for i, srcPort := range []uint16{40000, 40000, 40000, 40001} {
		payload := []byte(strings.Repeat(string(rune('k'+i)), 100+i))
		want = append(want, string(payload))
		b := make([]byte, Offset, BufferLen(d.MTU()))
		b = appendUDP6(b, udp6{src: peerULA, dst: localULA, srcPort: srcPort, dstPort: port, payload: payload})
		bufs = append(bufs, b)
	}
	if err := d.Write(bufs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := map[string]bool{}
	buf := make([]byte, 2048)
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range want {
		n, from, err := ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			if l, lerr := netlink.LinkByName(d.Name()); lerr == nil {
				t.Logf("%s statistics: %+v", d.Name(), *l.Attrs().Statistics)
			}
			if b, err := os.ReadFile("/proc/thread-self/net/snmp6"); err == nil {
				for _, l := range strings.Split(string(b), "\n") {
					if f := strings.Fields(l); len(f) == 2 && f[1] != "0" {
						t.Log(l)
					}
				}
			}
			t.Fatalf("after %d datagrams: %v", len(got), err)
		}
		if from.Addr() != peerULA {
			t.Errorf("datagram from %v, want %v", from, peerULA)
		}
		got[string(buf[:n])] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing datagram %q…", w[:4])
		}
	}
	if err := d.Write(nil); err != nil {
		t.Errorf("Write(nil): %v", err)
	}
}

func TestClose(t *testing.T) {
	inNetns(t)
	d, err := Create("btmmclose0", localULA, 0)
	if err != nil {
		t.Fatal(err)
	}
	ch := reader(t, d)
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case b := <-ch:
		for ; b.err == nil; b = <-ch {
		}
		if !errors.Is(b.err, os.ErrClosed) {
			t.Errorf("pending Read: %v, want os.ErrClosed", b.err)
		}
	case <-time.After(5 * time.Second):
		t.Error("pending Read did not return after Close")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := netlink.LinkByName("btmmclose0")
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("device still there after Close: %v", err)
		}
	}
}
