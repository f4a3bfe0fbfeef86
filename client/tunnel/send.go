package tunnel

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"time"

	"github.com/openbtmm/btmm/client/tunnel/esp"
	"github.com/openbtmm/btmm/client/tunnel/handshake"
	"github.com/openbtmm/btmm/client/tunnel/tun"
)

// The two packages number the suites alike; this fails to compile otherwise.
var (
	_ = [1]struct{}{}[esp.AES256GCM-esp.Suite(handshake.SuiteAES256GCM)]
	_ = [1]struct{}{}[esp.ChaCha20Poly1305-esp.Suite(handshake.SuiteChaCha20Poly1305)]
)

const ipv6HeaderLen = 40

// readTUN is the outbound stage: read a batch, seal each run of packets to
// one peer in place under that keypair's send lock, and send the run in
// one call.
func (t *Tunnel) readTUN(ctx context.Context) error {
	batch := max(t.cfg.TUN.BatchSize(), 1)
	bufs := make([][]byte, batch)
	for i := range bufs {
		// Full size, not tun.BufferLen: the Bind coalesces a run of
		// datagrams into the first one's buffer for UDP GSO.
		bufs[i] = make([]byte, maxUDPPacket)
	}
	sizes := make([]int, batch)
	out := make([][]byte, 0, batch)
	for {
		n, err := t.cfg.TUN.Read(bufs, sizes)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			if errors.Is(err, tun.ErrTooManySegments) {
				continue // a lost GSO packet; the sender retransmits
			}
			return err
		}
		now := t.now()
		// A batch is usually one TCP super-packet split up: one run, to
		// one peer.
		var p *peer
		start := 0
		for i := range n {
			q := t.peerFor(bufs[i], sizes[i])
			if q != p {
				out = t.sendRun(p, bufs[start:i], sizes[start:i], out, now)
				p, start = q, i
			}
		}
		out = t.sendRun(p, bufs[start:n], sizes[start:n], out, now)
	}
}

// peerFor returns the peer of the packet at buf[tun.Offset:][:size], or nil
// (counted) if it goes nowhere.
func (t *Tunnel) peerFor(buf []byte, size int) *peer {
	pkt := buf[tun.Offset : tun.Offset+size]
	if len(pkt) < ipv6HeaderLen || pkt[0]>>4 != 6 {
		t.ctr.notIPv6.Add(1)
		return nil
	}
	dst := netip.AddrFrom16([16]byte(pkt[24:40]))
	t.mu.RLock()
	p := t.peers[dst]
	t.mu.RUnlock()
	if p == nil {
		t.ctr.unknownDest.Add(1)
	}
	return p
}

// sendRun seals the packets bufs[i][tun.Offset:][:sizes[i]] for p and sends
// them in one batch, or stages them while there is no keypair to send on.
// out is scratch space, returned emptied.
func (t *Tunnel) sendRun(p *peer, bufs [][]byte, sizes []int, out [][]byte, now time.Time) [][]byte {
	if p == nil || len(bufs) == 0 {
		return out[:0]
	}
	if p.removed.Load() {
		t.ctr.unknownDest.Add(uint64(len(bufs)))
		return out[:0]
	}
	for len(bufs) > 0 {
		kp := p.cur.Load()
		if !kp.sendable(now) || p.endpoint.Load() == nil {
			if t.stage(p, bufs, sizes, now) {
				break
			}
			continue // a keypair arrived meanwhile: seal on it
		}
		var sealed int
		out, sealed = t.seal(kp, bufs, sizes, out, now)
		// Noted before the send: an answer may come back before send
		// returns, and must find it noted.
		p.sentData(now)
		t.send(p, out, now)
		clear(out)
		out = out[:0]
		bufs, sizes = bufs[sealed:], sizes[sealed:]
	}
	return out
}

// seal seals as many of the packets as kp allows onto out and returns how
// many it sealed; fewer than all only when kp's sequence numbers ran out.
func (t *Tunnel) seal(kp *keypair, bufs [][]byte, sizes []int, out [][]byte, now time.Time) ([][]byte, int) {
	p := kp.peer
	var octets uint64
	kp.sendMu.Lock()
	n := 0
	for ; n < len(bufs); n++ {
		b, err := kp.send.Seal(bufs[n][:0], bufs[n][esp.HeaderLen:esp.HeaderLen+sizes[n]])
		if err != nil { // esp.ErrExhausted: an auditable event (RFC 4303 §3.3.3)
			t.logf("tunnel: peer %v: outbound SA %#x exhausted, rekeying", p.ula, kp.send.SPI())
			kp.dead.Store(true)
			break
		}
		out = append(out, b)
		octets += uint64(sizes[n])
	}
	kp.sendMu.Unlock()
	kp.sent.Add(uint64(n))
	p.txPackets.Add(uint64(n))
	p.txBytes.Add(octets)
	if kp.needsHandshake(now) {
		t.askInitiation(p)
	}
	return out, n
}

// stage copies the packets into p's staging queue and asks for a
// handshake. It reports false, staging nothing, if a keypair to send on
// was set meanwhile: the worker sets it under p.mu and flushes the queue
// then, so a packet staged after that would wait for the next handshake.
func (t *Tunnel) stage(p *peer, bufs [][]byte, sizes []int, now time.Time) bool {
	p.mu.Lock()
	if p.cur.Load().sendable(now) && p.endpoint.Load() != nil {
		p.mu.Unlock()
		return false
	}
	for i := range bufs {
		t.stageLocked(p, bufs[i][tun.Offset:tun.Offset+sizes[i]])
	}
	p.mu.Unlock()
	t.askInitiation(p)
	return true
}

// stageLocked copies pkt into the peer's staging queue, dropping the oldest
// packet when the queue is full.
func (t *Tunnel) stageLocked(p *peer, pkt []byte) {
	if len(p.staged) >= MaxStagedPackets {
		copy(p.staged, p.staged[1:])
		p.staged[len(p.staged)-1] = nil
		p.staged = p.staged[:len(p.staged)-1]
		p.stat.stagedDropped++
	}
	b := make([]byte, esp.HeaderLen+len(pkt), esp.HeaderLen+esp.SealedLen(len(pkt)))
	copy(b[esp.HeaderLen:], pkt)
	p.staged = append(p.staged, b)
}

// flushLocked seals the staged packets on the current keypair and sends
// them in one batch. p.mu is held.
func (t *Tunnel) flushLocked(p *peer, now time.Time) {
	kp := p.cur.Load()
	if len(p.staged) == 0 || !kp.sendable(now) || p.endpoint.Load() == nil {
		return
	}
	sizes := make([]int, len(p.staged))
	for i, b := range p.staged {
		sizes[i] = len(b) - esp.HeaderLen
	}
	out, n := t.seal(kp, p.staged, sizes, make([][]byte, 0, len(p.staged)), now)
	p.sentData(now)
	t.send(p, out, now) // a failure is counted; the packets are gone
	// What did not fit (the keypair died) stays staged for the next one.
	rest := copy(p.staged, p.staged[n:])
	clear(p.staged[rest:])
	p.staged = p.staged[:rest]
}

// Announce tells every peer with a working SA where this host is now: it
// sends each one authenticated dummy ESP packet (RFC 4303 §2.6) from the
// tunnel port, so that the peer moves its endpoint to our new address at
// once (roaming), before our new address reaches it through the DNS. Call
// it after the local network or the NAT's public address changed. The
// sockets need no rebinding: they listen on every address.
func (t *Tunnel) Announce() {
	now := t.now()
	for _, p := range t.appendPeers(nil) {
		if !p.removed.Load() {
			t.sendDummy(p, now)
		}
	}
}

// sendDummy sends p one authenticated dummy ESP packet, if there is an SA
// to send on.
func (t *Tunnel) sendDummy(p *peer, now time.Time) {
	kp := p.cur.Load()
	if !kp.sendable(now) {
		return
	}
	kp.sendMu.Lock()
	b, err := kp.send.SealDummy(make([]byte, 0, esp.SealedLen(0)))
	kp.sendMu.Unlock()
	if err == nil {
		p.owingSince.Store(0) // before the send, as in sentData
		t.send(p, [][]byte{b}, now)
	}
}

// sentData notes data sent to p: something authentic is owed to p no
// longer, and something is awaited from it (Paths in the package
// documentation). The loads keep the shared cache line clean while
// nothing changes.
func (p *peer) sentData(now time.Time) {
	if p.owingSince.Load() != 0 {
		p.owingSince.Store(0)
	}
	if p.awaitingSince.Load() == 0 {
		p.awaitingSince.CompareAndSwap(0, now.UnixNano())
	}
}
