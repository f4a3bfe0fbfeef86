package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openbtmm/btmm/client/tunnel/esp"
	"github.com/openbtmm/btmm/client/tunnel/handshake"
	"github.com/openbtmm/btmm/client/tunnel/tun"
)

// chanTUN is a TUN device made of channels, as wireguard-go's tuntest.
type chanTUN struct {
	in, out   chan []byte // in: packets the host sends; out: packets the tunnel delivers
	closed    chan struct{}
	closeOnce sync.Once
}

func newChanTUN() *chanTUN {
	return &chanTUN{in: make(chan []byte, 16), out: make(chan []byte, 64), closed: make(chan struct{})}
}

func (c *chanTUN) Read(bufs [][]byte, sizes []int) (int, error) {
	select {
	case p := <-c.in:
		sizes[0] = copy(bufs[0][tun.Offset:], p)
		return 1, nil
	case <-c.closed:
		return 0, os.ErrClosed
	}
}

func (c *chanTUN) Write(bufs [][]byte) error {
	for _, b := range bufs {
		p := bytes.Clone(b[tun.Offset:])
		select {
		case c.out <- p:
		case <-c.closed:
			return os.ErrClosed
		}
	}
	return nil
}

func (c *chanTUN) MTU() int       { return tun.DefaultMTU }
func (c *chanTUN) BatchSize() int { return 4 }
func (c *chanTUN) Close() error   { c.closeOnce.Do(func() { close(c.closed) }); return nil }

type node struct {
	t   *Tunnel
	tun *chanTUN
	ula netip.Addr
	kp  handshake.KeyPair
}

// addr is where the node's tunnel port is reached: its Bind listens on
// every address.
func (n *node) addr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), n.t.Port())
}

func (n *node) peer() Peer {
	return Peer{ULA: n.ula, Endpoints: []netip.AddrPort{n.addr()}, Static: n.kp.Public}
}

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startNode(t testing.TB, ula string, psk [32]byte) *node {
	t.Helper()
	return startNodeWith(t, ula, psk, nil)
}

// startNodeWith is startNode with a change to the Config.
func startNodeWith(t testing.TB, ula string, psk [32]byte, change func(*Config)) *node {
	t.Helper()
	kp, err := handshake.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{tun: newChanTUN(), ula: netip.MustParseAddr(ula), kp: kp}
	cfg := Config{TUN: n.tun, Static: kp, PSK: psk, ULA: n.ula, Logf: t.Logf}
	if change != nil {
		change(&cfg)
	}
	n.t, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.t.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return n
}

// goroutineLeakCheck fails the test if goroutines started during it are
// still running after the other cleanups (registered later, so run earlier).
func goroutineLeakCheck(t testing.TB) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("%d goroutines leaked:\n%s", n-before, buf[:runtime.Stack(buf, true)])
		}
	})
}

// ipv6UDP builds an IPv6 packet with a UDP payload and valid checksum.
func ipv6UDP(src, dst netip.Addr, payload []byte) []byte {
	ulen := 8 + len(payload)
	p := make([]byte, 40+ulen)
	p[0] = 6 << 4
	binary.BigEndian.PutUint16(p[4:], uint16(ulen))
	p[6] = 17 // UDP
	p[7] = 64
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	u := p[40:]
	binary.BigEndian.PutUint16(u[0:], 5353)
	binary.BigEndian.PutUint16(u[2:], 9)
	binary.BigEndian.PutUint16(u[4:], uint16(ulen))
	copy(u[8:], payload)
	// Checksum over the pseudo-header (RFC 8200 §8.1) and the datagram.
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(p[8:40])
	sum += uint32(ulen) + 17
	add(u)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	c := ^uint16(sum)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return p
}

func expectPacket(t testing.TB, n *node, want []byte) {
	t.Helper()
	select {
	case got := <-n.tun.out:
		if !bytes.Equal(got, want) {
			t.Fatalf("delivered packet differs:\n got %x\nwant %x", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no packet delivered to %v", n.ula)
	}
}

func expectNothing(t testing.TB, n *node, d time.Duration) {
	t.Helper()
	select {
	case got := <-n.tun.out:
		t.Fatalf("unexpected packet delivered to %v: %x", n.ula, got)
	case <-time.After(d):
	}
}

func status(t testing.TB, n *node, ula netip.Addr) PeerStatus {
	t.Helper()
	for _, s := range n.t.Status() {
		if s.ULA == ula {
			return s
		}
	}
	t.Fatalf("%v has no peer %v", n.ula, ula)
	return PeerStatus{}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// proxy relays datagrams between a and b through one socket and records
// what it forwarded toward a. Both ends see the proxy as their peer.
type proxy struct {
	conn *net.UDPConn
	a, b netip.AddrPort
	cut  atomic.Bool // drop everything: a path that died
	mu   sync.Mutex
	toA  [][]byte
}

func startProxy(t *testing.T, a, b netip.AddrPort) *proxy {
	px := &proxy{conn: listen(t), a: a, b: b}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, src, err := px.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if px.cut.Load() {
				continue
			}
			dst := px.b
			if src == px.b {
				dst = px.a
				px.mu.Lock()
				px.toA = append(px.toA, bytes.Clone(buf[:n]))
				px.mu.Unlock()
			}
			px.conn.WriteToUDPAddrPort(buf[:n], dst)
		}
	}()
	t.Cleanup(func() { px.conn.Close(); <-done })
	return px
}

func (px *proxy) addr() netip.AddrPort { return px.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// lastESPToA returns the last ESP datagram relayed toward a.
func (px *proxy) lastESPToA(t *testing.T) []byte {
	px.mu.Lock()
	defer px.mu.Unlock()
	for i := len(px.toA) - 1; i >= 0; i-- {
		if k, _ := esp.Classify(px.toA[i]); k == esp.ESP {
			return bytes.Clone(px.toA[i])
		}
	}
	t.Fatal("proxy saw no ESP toward a")
	return nil
}

// moveBehindProxy makes the SAs between a and b (one packet a→b), then
// moves b behind a proxy: b sends to a through it, so a sees b at a new
// address and port once b sends.
func moveBehindProxy(t *testing.T, a, b *node) *proxy {
	p := ipv6UDP(a.ula, b.ula, []byte("hello"))
	a.tun.in <- p
	expectPacket(t, b, p)
	px := startProxy(t, a.addr(), b.addr())
	b.t.SetPeer(Peer{ULA: a.ula, Endpoints: []netip.AddrPort{px.addr()}, Static: a.kp.Public})
	return px
}

// establish sends a first packet from a to b, which makes their SAs.
func establish(t testing.TB, a, b *node) {
	t.Helper()
	p := ipv6UDP(a.ula, b.ula, []byte("first"))
	a.tun.in <- p
	expectPacket(t, b, p)
}

func pair(t testing.TB) (a, b *node) {
	var psk [32]byte
	copy(psk[:], "shared account secret, derived..")
	a = startNode(t, "fd00::a", psk)
	b = startNode(t, "fd00::b", psk)
	a.t.SetPeer(b.peer())
	b.t.SetPeer(a.peer())
	return a, b
}

func TestRoundTrip(t *testing.T) {
	goroutineLeakCheck(t)
	a, b := pair(t)

	for i := range 3 {
		p := ipv6UDP(a.ula, b.ula, []byte(strings.Repeat("x", i*7+1)))
		a.tun.in <- p
		expectPacket(t, b, p)
		r := ipv6UDP(b.ula, a.ula, []byte("reply"))
		b.tun.in <- r
		expectPacket(t, a, r)
	}
	sa, sb := status(t, a, b.ula), status(t, b, a.ula)
	if !sa.HasSA || !sb.HasSA {
		t.Errorf("HasSA: a %v, b %v", sa.HasSA, sb.HasSA)
	}
	if sa.TxPackets != 3 || sa.RxPackets != 3 || sb.TxPackets != 3 || sb.RxPackets != 3 {
		t.Errorf("packets: a tx %d rx %d, b tx %d rx %d", sa.TxPackets, sa.RxPackets, sb.TxPackets, sb.RxPackets)
	}
	if sa.Endpoint != b.addr() || sb.Endpoint != a.addr() {
		t.Errorf("endpoints: a→b %v (want %v), b→a %v (want %v)", sa.Endpoint, b.addr(), sb.Endpoint, a.addr())
	}

	// Unknown destination and non-IPv6 are counted.
	a.tun.in <- ipv6UDP(a.ula, netip.MustParseAddr("fd00::99"), []byte("?"))
	a.tun.in <- []byte{0x45, 0, 0, 20}
	waitFor(t, "unknown dest counted", func() bool {
		c := a.t.Counters()
		return c.UnknownDest == 1 && c.NotIPv6 == 1
	})
}

// TestWrongPSK: a host of another account (another PSK) cannot finish a
// handshake, and nothing it sends is delivered.
func TestWrongPSK(t *testing.T) {
	goroutineLeakCheck(t)
	_, b := pair(t)
	var other [32]byte
	copy(other[:], "someone else's account secret...")
	c := startNode(t, "fd00::c", other)
	c.t.SetPeer(b.peer())
	b.t.SetPeer(c.peer())

	c.tun.in <- ipv6UDP(c.ula, b.ula, []byte("let me in"))
	waitFor(t, "handshake failure at c", func() bool { return status(t, c, b.ula).HandshakeFailures > 0 })
	expectNothing(t, b, 200*time.Millisecond)
	if s := status(t, c, b.ula); s.HasSA || s.TxPackets != 0 {
		t.Errorf("c: HasSA %v, tx %d", s.HasSA, s.TxPackets)
	}
	if s := status(t, b, c.ula); s.HasSA || s.RxPackets != 0 {
		t.Errorf("b: unconfirmed SA became current: HasSA %v, rx %d", s.HasSA, s.RxPackets)
	}
}

// TestRoamReplayTamper: b moves behind a proxy (a new source port); a
// follows the first authentic packet. Then replayed, tampered and
// unknown-SPI datagrams are dropped and counted.
func TestRoamReplayTamper(t *testing.T) {
	goroutineLeakCheck(t)
	a, b := pair(t)
	px := moveBehindProxy(t, a, b)
	r := ipv6UDP(b.ula, a.ula, []byte("from my new port"))
	b.tun.in <- r
	expectPacket(t, a, r)
	if s := status(t, a, b.ula); s.Endpoint != px.addr() || s.Roams != 1 {
		t.Fatalf("a's endpoint for b: %v (roams %d), want %v", s.Endpoint, s.Roams, px.addr())
	}
	if s := status(t, b, a.ula); !s.HasSA {
		t.Fatal("b lost its SA when its endpoint changed")
	}
	// And a's traffic now goes through the proxy.
	p2 := ipv6UDP(a.ula, b.ula, []byte("following you"))
	a.tun.in <- p2
	expectPacket(t, b, p2)

	captured := px.lastESPToA(t)
	inj := listen(t)
	defer inj.Close()
	send := func(b []byte) {
		if _, err := inj.WriteToUDPAddrPort(b, a.addr()); err != nil {
			t.Fatal(err)
		}
	}

	send(captured) // replay
	waitFor(t, "replay drop", func() bool { return dropsOf(t, a, b.ula, esp.ErrReplay) == 1 })

	flipped := bytes.Clone(captured)
	flipped[len(flipped)-20] ^= 0x01 // in the ciphertext
	// A fresh sequence number so the replay check passes and the ICV fails.
	binary.BigEndian.PutUint32(flipped[4:], binary.BigEndian.Uint32(flipped[4:])+100)
	send(flipped)
	waitFor(t, "bad ICV drop", func() bool { return dropsOf(t, a, b.ula, esp.ErrAuth) == 1 })

	unknown := bytes.Clone(captured)
	binary.BigEndian.PutUint32(unknown[0:], 0x7fff_fff1)
	send(unknown)
	waitFor(t, "unknown SPI", func() bool { return a.t.Counters().UnknownSPI == 1 })

	expectNothing(t, a, 100*time.Millisecond)
	s := status(t, a, b.ula)
	if s.Endpoint != px.addr() || s.Roams != 1 {
		t.Errorf("an unauthentic datagram moved the endpoint to %v", s.Endpoint)
	}
	if s.RxPackets != 1 {
		t.Errorf("a rx %d, want 1", s.RxPackets)
	}
	// Still working.
	r2 := ipv6UDP(b.ula, a.ula, []byte("still here"))
	b.tun.in <- r2
	expectPacket(t, a, r2)
}

// TestBadSource: an authentic packet whose inner source is not the peer's
// ULA is dropped.
func TestBadSource(t *testing.T) {
	goroutineLeakCheck(t)
	a, b := pair(t)
	establish(t, a, b)
	spoof := ipv6UDP(netip.MustParseAddr("fd00::66"), b.ula, []byte("spoofed"))
	a.tun.in <- spoof
	waitFor(t, "bad source", func() bool { return status(t, b, a.ula).BadSource == 1 })
	expectNothing(t, b, 50*time.Millisecond)
}

func TestRemovePeer(t *testing.T) {
	goroutineLeakCheck(t)
	a, b := pair(t)
	establish(t, a, b)
	b.t.RemovePeer(a.ula)
	a.tun.in <- ipv6UDP(a.ula, b.ula, []byte("gone"))
	waitFor(t, "unknown SPI at b", func() bool { return b.t.Counters().UnknownSPI >= 1 })
	expectNothing(t, b, 50*time.Millisecond)
	if len(b.t.Status()) != 0 {
		t.Error("peer still listed")
	}
}

func TestStagingDropsOldest(t *testing.T) {
	tn := &Tunnel{} // stageLocked needs no configuration
	p := &peer{ula: netip.MustParseAddr("fd00::b")}
	for i := range MaxStagedPackets + 3 {
		tn.stageLocked(p, []byte{byte(i)})
	}
	if len(p.staged) != MaxStagedPackets || p.stat.stagedDropped != 3 {
		t.Fatalf("staged %d, dropped %d", len(p.staged), p.stat.stagedDropped)
	}
	if got := p.staged[0][esp.HeaderLen]; got != 3 {
		t.Errorf("oldest kept is %d, want 3", got)
	}
}

func dropsOf(t *testing.T, n *node, ula netip.Addr, d esp.Drop) uint64 {
	s := status(t, n, ula)
	return s.Drops.Get(d)
}

// fakeClock is a Config.Now that moves only when the test moves it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// pairWithClock is pair with both tunnels on clk.
func pairWithClock(t testing.TB, clk *fakeClock) (a, b *node) {
	var psk [32]byte
	copy(psk[:], "shared account secret, derived..")
	onClock := func(c *Config) { c.Now = clk.Now }
	a = startNodeWith(t, "fd00::a", psk, onClock)
	b = startNodeWith(t, "fd00::b", psk, onClock)
	a.t.SetPeer(b.peer())
	b.t.SetPeer(a.peer())
	return a, b
}

// peerOf returns n's peer state for ula.
func peerOf(n *node, ula netip.Addr) *peer {
	n.t.mu.RLock()
	defer n.t.mu.RUnlock()
	return n.t.peers[ula]
}

// TestRekeyByTime: an initiator-side pair older than RekeyAfterTime starts a
// handshake on the next send; traffic keeps flowing across the switch, and
// the responder switches only when the first packet under the new pair
// arrives. Then the old pair's inbound SA is dropped after OldSAGrace.
func TestRekeyByTime(t *testing.T) {
	goroutineLeakCheck(t)
	clk := newFakeClock()
	a, b := pairWithClock(t, clk)
	establish(t, a, b)
	first := status(t, a, b.ula).LastHandshake
	pa, pb := peerOf(a, b.ula), peerOf(b, a.ula)
	oldSPI := pa.cur.Load().send.SPI()

	clk.Advance(RekeyAfterTime)
	for i := range 5 {
		q := ipv6UDP(a.ula, b.ula, []byte{byte(i)})
		a.tun.in <- q
		expectPacket(t, b, q)
		r := ipv6UDP(b.ula, a.ula, []byte{byte(i), 'r'})
		b.tun.in <- r
		expectPacket(t, a, r)
	}
	waitFor(t, "rekey", func() bool { return status(t, a, b.ula).LastHandshake.After(first) })
	if n := status(t, a, b.ula).Handshakes; n != 2 {
		t.Errorf("a counts %d handshakes after the first and a rekey, want 2", n)
	}
	newSPI := pa.cur.Load().send.SPI()
	if newSPI == oldSPI {
		t.Fatal("a still sends on the old SA")
	}
	// b switches on the first packet under the new pair.
	q := ipv6UDP(a.ula, b.ula, []byte("on the new pair"))
	a.tun.in <- q
	expectPacket(t, b, q)
	pb.mu.Lock()
	curRecv := pb.cur.Load().recv.SPI()
	prev := pb.prev
	pb.mu.Unlock()
	if curRecv != newSPI || prev == nil || prev.recv.SPI() == newSPI {
		t.Fatalf("b: current inbound SPI %#x, want %#x; old pair kept: %v", curRecv, newSPI, prev != nil)
	}

	clk.Advance(OldSAGrace + time.Second)
	b.t.tick()
	pb.mu.Lock()
	kept := pb.prev != nil
	pb.mu.Unlock()
	b.t.mu.RLock()
	_, still := b.t.bySPI[prev.recv.SPI()]
	b.t.mu.RUnlock()
	if kept || still {
		t.Errorf("after OldSAGrace b keeps the old pair (%v) or its SPI (%v)", kept, still)
	}
}

// TestTimers drives the timers by the clock, with a peer that never
// answers (a plain socket): a keepalive when nothing was sent for
// KeepaliveInterval, an initiation retransmitted every RekeyTimeout, and
// after MaxInitiationAttempts the handshake given up and its staged
// packet dropped.
func TestTimers(t *testing.T) {
	goroutineLeakCheck(t)
	clk := newFakeClock()
	var psk [32]byte
	a := startNodeWith(t, "fd00::a", psk, func(c *Config) { c.Now = clk.Now })
	silent := listen(t)
	defer silent.Close()
	kp, err := handshake.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := Peer{ULA: netip.MustParseAddr("fd00::c"), Endpoints: []netip.AddrPort{silent.LocalAddr().(*net.UDPAddr).AddrPort()}, Static: kp.Public}
	a.t.SetPeer(c)

	buf := make([]byte, 2048)
	next := func(what string) []byte {
		t.Helper()
		silent.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := silent.Read(buf)
		if err != nil {
			t.Fatalf("no %s: %v", what, err)
		}
		return buf[:n]
	}
	none := func(what string) {
		t.Helper()
		silent.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, err := silent.Read(buf); err == nil {
			t.Fatalf("%s: unexpected datagram %x", what, buf[:n])
		}
	}
	isInitiation := func(d []byte) bool {
		k, msg := esp.Classify(d)
		return k == esp.NonESP && msg[0] == handshake.TypeInitiation
	}

	// Never sent to: the first tick sends a keepalive, the next only
	// after KeepaliveInterval.
	a.t.tick()
	if d := next("keepalive"); len(d) != 1 || d[0] != 0xff {
		t.Fatalf("first tick sent %x, want a keepalive", d)
	}
	clk.Advance(KeepaliveInterval / 2)
	a.t.tick()
	none("half a keepalive interval later")
	clk.Advance(KeepaliveInterval / 2)
	a.t.tick()
	if d := next("second keepalive"); len(d) != 1 || d[0] != 0xff {
		t.Fatalf("sent %x, want a keepalive", d)
	}

	// A packet for c: staged, and an initiation goes out.
	a.tun.in <- ipv6UDP(a.ula, c.ULA, []byte("are you there?"))
	if !isInitiation(next("initiation")) {
		t.Fatal("not an initiation")
	}
	if s := status(t, a, c.ULA); s.Staged != 1 || !s.HandshakePending {
		t.Fatalf("staged %d, pending %v", s.Staged, s.HandshakePending)
	}
	a.t.tick()
	none("before RekeyTimeout")
	for i := 2; i <= MaxInitiationAttempts; i++ {
		clk.Advance(RekeyTimeout)
		a.t.tick()
		if !isInitiation(next("retransmission")) {
			t.Fatalf("retransmission %d is not an initiation", i)
		}
	}
	clk.Advance(RekeyTimeout)
	a.t.tick()
	s := status(t, a, c.ULA)
	if s.HandshakeTimeouts != 1 || s.HandshakePending || s.Staged != 0 || s.StagedDropped != 1 {
		t.Errorf("after %d attempts: timeouts %d, pending %v, staged %d, dropped %d",
			MaxInitiationAttempts, s.HandshakeTimeouts, s.HandshakePending, s.Staged, s.StagedDropped)
	}
}

// TestSendDoesNotWaitForReceive: with the peer's control lock and the
// keypair's receive lock held (as a busy inbound stage or handshake would),
// packets still go out.
func TestSendDoesNotWaitForReceive(t *testing.T) {
	goroutineLeakCheck(t)
	a, b := pair(t)
	establish(t, a, b)
	pa := peerOf(a, b.ula)
	kp := pa.cur.Load()
	pa.mu.Lock()
	kp.recvMu.Lock()
	defer func() { kp.recvMu.Unlock(); pa.mu.Unlock() }()
	for i := range 3 {
		q := ipv6UDP(a.ula, b.ula, []byte{'n', byte(i)})
		a.tun.in <- q
		expectPacket(t, b, q)
	}
}

// TestAnnounce: after b moves (here: behind a proxy, a new source port),
// Announce alone, with no data to send, makes a follow b at once; a
// delivers nothing for it and counts no drop.
func TestAnnounce(t *testing.T) {
	goroutineLeakCheck(t)
	a, b := pair(t)
	px := moveBehindProxy(t, a, b)
	b.t.Announce()
	waitFor(t, "a follows b", func() bool { return status(t, a, b.ula).Endpoint == px.addr() })
	expectNothing(t, a, 100*time.Millisecond)
	s := status(t, a, b.ula)
	if s.Roams != 1 || s.RxPackets != 0 {
		t.Errorf("roams %d, rx packets %d; want 1, 0", s.Roams, s.RxPackets)
	}
	for _, d := range []esp.Drop{esp.ErrDummy, esp.ErrAuth, esp.ErrReplay} {
		if n := dropsOf(t, a, b.ula, d); n != 0 {
			t.Errorf("%v counted %d times", d, n)
		}
	}
	// a's traffic goes through the proxy now.
	p2 := ipv6UDP(a.ula, b.ula, []byte("following you"))
	a.tun.in <- p2
	expectPacket(t, b, p2)
}

// flooder sends initiations to a tunnel from a socket of its own, as
// anyone who knows the tunnel's public key (it is in the DNS) can.
type flooder struct {
	conn *net.UDPConn
	cfg  handshake.Config
}

func newFlooder(t *testing.T) *flooder {
	kp, err := handshake.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &flooder{conn: listen(t), cfg: handshake.Config{Static: kp}}
	copy(f.cfg.PSK[:], "not this user's account secret..")
	t.Cleanup(func() { f.conn.Close() })
	return f
}

func (f *flooder) send(t *testing.T, to *node, msg []byte) {
	b := append(esp.AppendNonESPMarker(nil), msg...)
	if _, err := f.conn.WriteToUDPAddrPort(b, to.addr()); err != nil {
		t.Fatal(err)
	}
}

func (f *flooder) initiation(t *testing.T, to *node) ([]byte, *handshake.Initiation) {
	msg, st, err := handshake.Initiate(f.cfg, to.kp.Public, netip.MustParseAddr("fd00::666"), 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	return msg, st
}

// TestUnderLoad: a flood of initiations puts the responder under load:
// initiations then get cookie replies instead of DH work, a peer's
// handshake still completes (it answers the cookie), and a source that
// proved its address is held to a rate.
func TestUnderLoad(t *testing.T) {
	goroutineLeakCheck(t)
	a, b := pair(t)
	f := newFlooder(t)
	stop := make(chan struct{})
	flooding := make(chan struct{})
	go func() {
		defer close(flooding)
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			msg, _ := f.initiation(t, b)
			f.send(t, b, msg)
		}
	}()
	defer func() { close(stop); <-flooding }()
	waitFor(t, "cookie replies", func() bool { return b.t.Counters().CookieReplies > 0 })

	// a's first packet to b: initiation, cookie reply, initiation with
	// mac2, response.
	p := ipv6UDP(a.ula, b.ula, []byte("through the flood"))
	a.tun.in <- p
	expectPacket(t, b, p)

	// A flooder that answers its cookie proves its address, and is then
	// rate limited (WireGuard's 20 a second, 5 at once).
	msg, st := f.initiation(t, b)
	f.send(t, b, msg)
	buf := make([]byte, 1500)
	f.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := f.conn.Read(buf)
		if err != nil {
			t.Fatalf("no cookie reply: %v", err)
		}
		if n > esp.NonESPMarkerLen && buf[esp.NonESPMarkerLen] == handshake.TypeCookieReply && st.ConsumeCookie(buf[esp.NonESPMarkerLen:n]) == nil {
			break
		}
	}
	for range 30 {
		var err error
		if msg, st, err = st.Retry(); err != nil {
			t.Fatal(err)
		}
		f.send(t, b, msg)
	}
	waitFor(t, "rate limited", func() bool { return b.t.Counters().RateLimited > 0 })
}

// TestSuitePreference: a host configured for ChaCha20-Poly1305 only gets
// it from a peer that prefers AES-256-GCM; the status says which.
func TestSuitePreference(t *testing.T) {
	goroutineLeakCheck(t)
	var psk [32]byte
	a := startNodeWith(t, "fd00::a", psk, func(c *Config) { c.Suites = []handshake.Suite{handshake.SuiteChaCha20Poly1305} })
	b := startNodeWith(t, "fd00::b", psk, func(c *Config) {
		c.Suites = []handshake.Suite{handshake.SuiteAES256GCM, handshake.SuiteChaCha20Poly1305}
	})
	a.t.SetPeer(b.peer())
	b.t.SetPeer(a.peer())
	p := ipv6UDP(a.ula, b.ula, []byte("which cipher?"))
	a.tun.in <- p
	expectPacket(t, b, p)
	if sa, sb := status(t, a, b.ula), status(t, b, a.ula); sa.Suite != esp.ChaCha20Poly1305 || sb.Suite != esp.ChaCha20Poly1305 {
		t.Errorf("suites: a %v, b %v; want %v", sa.Suite, sb.Suite, esp.ChaCha20Poly1305)
	}
}

// TestIPv6Outer: peers reached over IPv6 (the Bind's second socket) work
// as over IPv4; esp's RFC 3948 framing is the same.
func TestIPv6Outer(t *testing.T) {
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skipf("this machine has no IPv6 loopback: %v", err)
	} else {
		c.Close()
	}
	goroutineLeakCheck(t)
	var psk [32]byte
	a := startNode(t, "fd00::a", psk)
	b := startNode(t, "fd00::b", psk)
	at6 := func(n *node) Peer {
		return Peer{ULA: n.ula, Endpoints: []netip.AddrPort{netip.AddrPortFrom(netip.IPv6Loopback(), n.t.Port())}, Static: n.kp.Public}
	}
	a.t.SetPeer(at6(b))
	b.t.SetPeer(at6(a))
	p := ipv6UDP(a.ula, b.ula, []byte("over IPv6"))
	a.tun.in <- p
	expectPacket(t, b, p)
	r := ipv6UDP(b.ula, a.ula, []byte("and back"))
	b.tun.in <- r
	expectPacket(t, a, r)
	if s := status(t, b, a.ula); s.Endpoint != at6(a).Endpoints[0] || s.Roams != 0 {
		t.Errorf("b sees a at %v (roams %d)", s.Endpoint, s.Roams)
	}
}
