package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/openbtmm/btmm/client/tunnel/esp"
	"github.com/openbtmm/btmm/client/tunnel/handshake"
)

// work is one job for the handshake worker.
type work struct {
	kind workKind
	peer *peer // workInitiate, workFlush
	// workMessage: a handshake message (after the non-ESP marker) and
	// where it came from.
	msg []byte
	src netip.AddrPort
	ep  conn.Endpoint
	// workNudge: src sent ESP for an SA this host does not have, or (if
	// false) a NAT keepalive.
	unknownSPI bool
}

type workKind uint8

const (
	workMessage  workKind = iota // a received initiation, response or cookie reply
	workInitiate                 // the data path has packets and no keypair, or must rekey
	workFlush                    // a keypair was confirmed while packets were staged
	workNudge                    // a sign from a peer's address that a handshake should go now
)

// queue hands w to the worker without waiting: a data goroutine never
// blocks on a handshake. A full queue means a flood; the message is
// dropped and its sender retransmits.
func (t *Tunnel) queue(w work) bool {
	select {
	case t.work <- w:
		return true
	default:
		t.ctr.handshakeQueueFull.Add(1)
		return false
	}
}

// nudge asks the worker to look at a sign of life from src (a NAT
// keepalive, or ESP for an SA this host does not have): see nudged. A
// source gets WireGuard's rate (golang.zx2c4.com/wireguard/ratelimiter:
// 20 a second, bursts of 5), so that a flood of such datagrams costs
// the worker little and a spoofed one sends a peer few initiations.
func (t *Tunnel) nudge(src netip.AddrPort, unknownSPI bool) {
	if t.nudges.Allow(src.Addr()) {
		t.queue(work{kind: workNudge, src: src, unknownSPI: unknownSPI})
	}
}

// nudged acts on a sign of life from src, if src is one of a peer's
// paths, so that a tunnel comes up without waiting for a timer:
//
//   - A handshake with the peer is pending: its initiation goes again at
//     once, the same message (a fresh one within 17 ms of the last would
//     carry the same timestamp and be refused). The peer's punch (SetPeer) says that it has just learnt of
//     this host, so an initiation it refused a moment ago, from a host it
//     did not know yet, would be taken now (a host that restarted and
//     initiated from its cached peers before its records reached them).
//   - ESP came for an SA this host does not have, and it has none to send
//     on: the peer still uses the SAs this host had before it restarted.
//     A handshake starts at once, rather than when the peer's own timer
//     finds the path dead.
func (t *Tunnel) nudged(src netip.AddrPort, unknownSPI bool) {
	now := t.now()
	for _, p := range t.appendPeers(nil) {
		p.mu.Lock()
		if !p.removed.Load() && p.reachedAt(src) {
			switch {
			case p.hs != nil:
				// The same message again: if the peer took it already,
				// it refuses the copy as a replay and its answer to the
				// first still finishes the handshake.
				t.sendAll(p, p.hsMsg, now)
			case p.hs == nil && unknownSPI && !p.cur.Load().sendable(now):
				t.initiateLocked(p, now)
			}
		}
		p.mu.Unlock()
	}
}

// reachedAt reports whether ap is p's endpoint or one of its paths.
// Callers hold p.mu.
func (p *peer) reachedAt(ap netip.AddrPort) bool {
	if p.endpointAddr() == ap {
		return true
	}
	for _, e := range p.paths {
		if e.addr == ap {
			return true
		}
	}
	return false
}

// askInitiation asks the worker for a handshake with p, once per burst.
func (t *Tunnel) askInitiation(p *peer) {
	if p.initiating.CompareAndSwap(false, true) && !t.queue(work{kind: workInitiate, peer: p}) {
		p.initiating.Store(false) // the timer asks again while packets wait
	}
}

// handshakes is the worker: it runs every handshake (and so every
// Diffie-Hellman) of the tunnel, off the data goroutines.
func (t *Tunnel) handshakes(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-t.work:
			t.do(w)
		}
	}
}

func (t *Tunnel) do(w work) {
	switch w.kind {
	case workMessage:
		t.receiveHandshake(w.msg, w.src, w.ep)
	case workInitiate:
		p := w.peer
		p.initiating.Store(false)
		p.mu.Lock()
		if !p.removed.Load() {
			t.startHandshakeLocked(p, t.now())
		}
		p.mu.Unlock()
	case workNudge:
		t.nudged(w.src, w.unknownSPI)
	case workFlush:
		p := w.peer
		p.mu.Lock()
		if !p.removed.Load() {
			t.flushLocked(p, t.now())
		}
		p.mu.Unlock()
	}
}

// startHandshakeLocked sends an initiation unless one is pending or the
// current keypair needs none (an ask that a finished handshake answered).
func (t *Tunnel) startHandshakeLocked(p *peer, now time.Time) {
	if !p.cur.Load().needsHandshake(now) {
		return
	}
	t.initiateLocked(p, now)
}

// initiateLocked sends an initiation along every path unless one is
// pending.
func (t *Tunnel) initiateLocked(p *peer, now time.Time) {
	if p.hs != nil || p.endpoint.Load() == nil {
		return
	}
	spi, err := t.allocSPI()
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

// sendHandshakeLocked sends an initiation along every path: the first
// to answer wins (see Paths in the package documentation).
func (t *Tunnel) sendHandshakeLocked(p *peer, msg []byte, now time.Time) {
	b := esp.AppendNonESPMarker(make([]byte, 0, esp.NonESPMarkerLen+len(msg)))
	p.hsSent, p.hsMsg = now, append(b, msg...)
	t.sendAll(p, p.hsMsg, now)
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
		p.stat.handshakeTimeouts++
		p.dropStagedLocked()
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

// rotateLocked makes kp current, keeping the old current pair's inbound SA
// for OldSAGrace (longer while it is used: peerTimers).
func (t *Tunnel) rotateLocked(p *peer, kp *keypair, now time.Time) {
	if p.prev != nil {
		t.freeKeypair(p.prev)
	}
	p.prev, p.prevExpire = p.cur.Load(), now.Add(OldSAGrace)
	if p.prev != nil {
		p.prev.received.Store(false)
	}
	p.cur.Store(kp)
	p.lastHS = now
	p.stat.handshakes++
}

func (t *Tunnel) receiveHandshake(msg []byte, src netip.AddrPort, ep conn.Endpoint) {
	switch msg[0] {
	case handshake.TypeInitiation:
		t.respond(msg, src, ep)
	case handshake.TypeResponse, handshake.TypeCookieReply:
		if len(msg) < 9 {
			t.ctr.badHandshake.Add(1)
			return
		}
		idx := binary.BigEndian.Uint32(msg[5:9])
		t.mu.RLock()
		p := t.byIndex[idx]
		t.mu.RUnlock()
		if p == nil {
			t.ctr.badHandshake.Add(1)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.removed.Load() || p.hs == nil || p.hs.Index() != idx {
			t.ctr.badHandshake.Add(1)
			return
		}
		if msg[0] == handshake.TypeCookieReply {
			if p.hs.ConsumeCookie(msg) != nil {
				p.stat.handshakeFailures++
				return
			}
			// Retransmit at once, now with a mac2.
			p.hsTries--
			t.retryHandshakeLocked(p, t.now())
			return
		}
		t.finishLocked(p, msg, src)
	default:
		t.ctr.badHandshake.Add(1)
	}
}

// finishLocked completes our initiation with its response, then sends
// what was staged in one batch.
func (t *Tunnel) finishLocked(p *peer, msg []byte, src netip.AddrPort) {
	res, err := p.hs.Finish(msg)
	if err != nil {
		// The Initiation stays usable: a forged response cannot cancel
		// the handshake. Another PSK ends here (handshake.ErrAuth).
		p.stat.handshakeFailures++
		t.logf("tunnel: response from %v for %v: %v", src, p.ula, err)
		return
	}
	t.mu.Lock()
	delete(t.byIndex, p.hs.Index())
	t.mu.Unlock()
	p.hs = nil
	if res.PeerULA != p.ula || res.PeerStatic != p.static {
		t.freeSPI(p.hsSPI)
		p.stat.handshakeFailures++
		return
	}
	now := t.now()
	kp, err := t.newKeypair(p, res, true, now)
	if err != nil {
		t.freeSPI(p.hsSPI)
		t.ctr.handshakeErrors.Add(1)
		return
	}
	t.rotateLocked(p, kp, now)
	// The response authenticated with the PSK: its source is the peer.
	if src != p.endpointAddr() {
		t.setEndpoint(p, src)
		p.roams.Add(1)
	}
	if len(p.staged) == 0 {
		// Nothing waits to confirm the new pair to the responder, which
		// sends on it only once something arrives under it (WireGuard
		// sends a keepalive here too): an authenticated dummy packet.
		t.sendDummy(p, now)
		return
	}
	t.flushLocked(p, now)
}

// respond answers an initiation. The new pair goes to p.next: it receives
// at once but sends nothing until an ESP packet confirms it.
func (t *Tunnel) respond(msg []byte, src netip.AddrPort, ep conn.Endpoint) {
	spi, err := t.allocSPI()
	if err != nil {
		t.ctr.handshakeErrors.Add(1)
		return
	}
	now := t.now()
	// Against floods (WireGuard's scheme): under load, an initiation
	// without a mac2 made from a cookie for its source gets a cookie reply
	// instead of DH work, and sources that proved their address are held
	// to a rate each.
	underLoad := t.load.initiation(now)
	if underLoad && t.resp.HasValidMAC2(msg, src) && !t.limiter.Allow(src.Addr()) {
		t.freeSPI(spi)
		t.ctr.rateLimited.Add(1)
		return
	}
	reply, res, err := t.resp.RespondFrom(msg, src, underLoad, t.cfg.ULA, spi)
	if errors.Is(err, handshake.ErrCookieRequired) {
		t.freeSPI(spi)
		t.ctr.cookieReplies.Add(1)
		b := esp.AppendNonESPMarker(make([]byte, 0, esp.NonESPMarkerLen+len(reply)))
		t.bind.Send([][]byte{append(b, reply...)}, ep)
		return
	}
	if err != nil {
		t.freeSPI(spi)
		t.ctr.badHandshake.Add(1)
		return
	}
	t.mu.RLock()
	p := t.peers[res.PeerULA]
	t.mu.RUnlock()
	if p == nil {
		t.freeSPI(spi)
		t.ctr.badHandshake.Add(1)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed.Load() || p.static != res.PeerStatic {
		t.freeSPI(spi)
		t.ctr.badHandshake.Add(1)
		return
	}
	kp, err := t.newKeypair(p, res, false, now)
	if err != nil {
		t.freeSPI(spi)
		t.ctr.handshakeErrors.Add(1)
		return
	}
	if p.next != nil {
		t.freeKeypair(p.next)
	}
	p.next = kp
	// Reply to where the initiation came from, but do not move the
	// endpoint: the initiator is not authenticated until its first ESP.
	b := esp.AppendNonESPMarker(make([]byte, 0, esp.NonESPMarkerLen+len(reply)))
	b = append(b, reply...)
	if err := t.bind.Send([][]byte{b}, ep); err != nil {
		p.sendErrors.Add(1)
	}
}

// loadMeter tells when initiations come faster than a user's few hosts
// ever send them: more than UnderLoadInitiations within a second puts the
// responder under load until a second has passed without that.
type loadMeter struct {
	mu          sync.Mutex
	windowStart time.Time
	count       int
	until       time.Time
}

func (m *loadMeter) initiation(now time.Time) (underLoad bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.windowStart) >= time.Second {
		m.windowStart, m.count = now, 0
	}
	m.count++
	if m.count > UnderLoadInitiations {
		m.until = now.Add(UnderLoadAfterTime)
	}
	return now.Before(m.until)
}
