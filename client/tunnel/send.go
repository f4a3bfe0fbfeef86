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

// readTUN is the outbound stage: read a batch, seal each packet in place
// and send each peer's run of packets in one batch.
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
		now := time.Now()
		// A batch is usually one TCP super-packet split up: all to one
		// peer. Each run of packets to the same peer is sealed under one
		// lock and sent in one call.
		var p *peer
		for i := range n {
			q := t.peerFor(bufs[i], sizes[i])
			if q != p {
				out = t.sendRun(p, out, now)
				p = q
			}
			if p != nil {
				out = t.sealOne(p, out, bufs[i], sizes[i], now)
			}
		}
		out = t.sendRun(p, out, now)
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

// sealOne seals one packet for p and appends the datagram to out, or
// stages it while a handshake runs.
func (t *Tunnel) sealOne(p *peer, out [][]byte, buf []byte, size int, now time.Time) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed {
		t.ctr.unknownDest.Add(1)
		return out
	}
	if b := t.sealLocked(p, buf, size, now); b != nil {
		return append(out, b)
	}
	t.stageLocked(p, buf[tun.Offset:tun.Offset+size])
	t.startHandshakeLocked(p, now)
	return out
}

// sendRun sends the datagrams sealed for p in one batch and returns out
// emptied.
func (t *Tunnel) sendRun(p *peer, out [][]byte, now time.Time) [][]byte {
	if p == nil || len(out) == 0 {
		return out[:0]
	}
	p.mu.Lock()
	ep := p.ep
	if ep != nil {
		p.lastSent = now
	}
	p.mu.Unlock()
	if ep == nil {
		return out[:0]
	}
	// Sent outside the peer's lock: the inbound stage must not wait for
	// the socket. Packets staged during a handshake are flushed by the
	// stage that finished it and may overtake or trail this run by a
	// few sequence numbers; the receiver's window takes that.
	if err := t.bind.Send(out, ep); err != nil {
		p.mu.Lock()
		t.sendFailedLocked(p, err)
		p.mu.Unlock()
	}
	clear(out)
	return out[:0]
}

// sealLocked seals the packet at buf[tun.Offset:][:size] on the current SA
// and returns the datagram (in buf). It returns nil if there is no usable
// SA; the caller stages.
func (t *Tunnel) sealLocked(p *peer, buf []byte, size int, now time.Time) []byte {
	kp := p.cur
	if kp == nil || p.ep == nil {
		return nil
	}
	age := now.Sub(kp.created)
	if age >= RejectAfterTime {
		t.freeKeypair(kp)
		p.cur = nil
		return nil
	}
	out, err := kp.send.Seal(buf[:0], buf[esp.HeaderLen:esp.HeaderLen+size])
	if err != nil { // esp.ErrExhausted: an auditable event (RFC 4303 §3.3.3)
		t.logf("tunnel: peer %v: outbound SA %#x exhausted, rekeying", p.ula, kp.send.SPI())
		t.freeKeypair(kp)
		p.cur = nil
		return nil
	}
	kp.sent++
	p.stat.TxPackets++
	p.stat.TxBytes += uint64(size)
	if kp.sent >= RekeyAfterPackets ||
		(kp.initiator && age >= RekeyAfterTime) || age >= RekeyAfterTimeResponder {
		t.startHandshakeLocked(p, now)
	}
	return out
}

// stageLocked copies pkt into the peer's staging queue, dropping the oldest
// packet when the queue is full.
func (t *Tunnel) stageLocked(p *peer, pkt []byte) {
	if len(p.staged) >= MaxStagedPackets {
		copy(p.staged, p.staged[1:])
		p.staged[len(p.staged)-1] = nil
		p.staged = p.staged[:len(p.staged)-1]
		p.stat.StagedDropped++
	}
	b := make([]byte, esp.HeaderLen+len(pkt), esp.HeaderLen+esp.SealedLen(len(pkt)))
	copy(b[esp.HeaderLen:], pkt)
	p.staged = append(p.staged, b)
}

// flushLocked sends the staged packets on the current SA.
func (t *Tunnel) flushLocked(p *peer, now time.Time) {
	for i, b := range p.staged {
		out := t.sealLocked(p, b, len(b)-esp.HeaderLen, now)
		if out == nil {
			// No SA after all (exhausted); keep the rest staged.
			n := copy(p.staged, p.staged[i:])
			clear(p.staged[n:])
			p.staged = p.staged[:n]
			return
		}
		t.sendLocked(p, out, now) // a failure is counted; go on
	}
	clear(p.staged)
	p.staged = p.staged[:0]
}

// startHandshakeLocked sends an initiation unless one is pending.
func (t *Tunnel) startHandshakeLocked(p *peer, now time.Time) {
	if p.hs != nil || !p.endpoint.IsValid() {
		return
	}
	spi, err := t.allocSPI(p)
	if err != nil {
		t.ctr.handshakeErrors.Add(1)
		return
	}
	msg, st, err := handshake.Initiate(t.hcfg, p.static, t.cfg.ULA, spi)
	if err != nil {
		t.freeSPI(spi)
		t.ctr.handshakeErrors.Add(1)
		t.logf("tunnel: initiate to %v: %v", p.ula, err)
		return
	}
	t.mu.Lock()
	t.byIndex[st.Index()] = p
	t.mu.Unlock()
	p.hs, p.hsSPI, p.hsTries = st, spi, 1
	t.sendHandshakeLocked(p, msg, now)
}

func (t *Tunnel) sendHandshakeLocked(p *peer, msg []byte, now time.Time) {
	b := esp.AppendNonESPMarker(make([]byte, 0, esp.NonESPMarkerLen+len(msg)))
	p.hsSent = now
	t.sendLocked(p, append(b, msg...), now)
}

// retryHandshakeLocked retransmits the pending initiation as a fresh one, or
// gives up after MaxInitiationAttempts.
func (t *Tunnel) retryHandshakeLocked(p *peer, now time.Time) {
	old := p.hs
	t.mu.Lock()
	delete(t.byIndex, old.Index())
	t.mu.Unlock()
	if p.hsTries >= MaxInitiationAttempts {
		t.freeSPI(p.hsSPI)
		p.hs = nil
		p.stat.HandshakeTimeouts++
		p.stat.StagedDropped += uint64(len(p.staged))
		clear(p.staged)
		p.staged = p.staged[:0]
		t.logf("tunnel: handshake with %v timed out", p.ula)
		return
	}
	msg, st, err := old.Retry()
	if err != nil {
		t.freeSPI(p.hsSPI)
		p.hs = nil
		t.ctr.handshakeErrors.Add(1)
		return
	}
	t.mu.Lock()
	t.byIndex[st.Index()] = p
	t.mu.Unlock()
	p.hs = st
	p.hsTries++
	t.sendHandshakeLocked(p, msg, now)
}

// Announce tells every peer with a working SA where this host is now: it
// sends each one authenticated dummy ESP packet (RFC 4303 §2.6) from the
// tunnel port, so that the peer moves its endpoint to our new address at
// once (roaming), before our new address reaches it through the DNS. Call
// it after the local network or the NAT's public address changed. The
// sockets need no rebinding: they listen on every address.
func (t *Tunnel) Announce() {
	now := time.Now()
	for _, p := range t.appendPeers(nil) {
		p.mu.Lock()
		if kp := p.cur; kp != nil && !p.removed && p.ep != nil {
			if b, err := kp.send.SealDummy(make([]byte, 0, esp.SealedLen(0))); err == nil {
				t.sendLocked(p, b, now)
			}
		}
		p.mu.Unlock()
	}
}

// timers runs retransmission, SA expiry and NAT keepalives.
func (t *Tunnel) timers(ctx context.Context) {
	tick := time.NewTicker(timerTick)
	defer tick.Stop()
	var ps []*peer
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			ps = t.appendPeers(ps[:0])
			for _, p := range ps {
				t.peerTimers(p, now)
			}
			clear(ps)
		}
	}
}

func (t *Tunnel) peerTimers(p *peer, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed {
		return
	}
	if p.hs != nil && now.Sub(p.hsSent) >= RekeyTimeout {
		t.retryHandshakeLocked(p, now)
	}
	if p.prev != nil && now.After(p.prevExpire) {
		t.freeKeypair(p.prev)
		p.prev = nil
	}
	if p.next != nil && now.Sub(p.next.created) >= UnconfirmedSATimeout {
		t.freeKeypair(p.next)
		p.next = nil
	}
	if p.cur != nil && now.Sub(p.cur.created) >= RejectAfterTime {
		t.freeKeypair(p.cur)
		p.cur = nil
	}
	if p.endpoint.IsValid() && now.Sub(p.lastSent) >= KeepaliveInterval {
		var ka [1]byte
		t.sendLocked(p, esp.AppendKeepalive(ka[:0]), now)
	}
}
