package tunnel

import (
	"context"
	"time"

	"github.com/openbtmm/btmm/client/tunnel/esp"
)

// timers runs tick every timerTick until ctx ends.
func (t *Tunnel) timers(ctx context.Context) {
	tick := time.NewTicker(timerTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.tick()
		}
	}
}

// tick runs every peer's timers once at the tunnel's clock:
// retransmission, SA expiry, NAT keepalives. Tests call it after moving
// their clock.
func (t *Tunnel) tick() {
	now := t.now()
	for _, p := range t.appendPeers(nil) {
		t.peerTimers(p, now)
	}
}

func (t *Tunnel) peerTimers(p *peer, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed.Load() {
		return
	}
	if p.hs != nil && now.Sub(p.hsSent) >= RekeyTimeout {
		t.retryHandshakeLocked(p, now)
	}
	if p.prev != nil && now.After(p.prevExpire) {
		if p.prev.received.Swap(false) && now.Sub(p.prev.created) < RejectAfterTime {
			// The peer still sends under it: handshakes crossed.
			p.prevExpire = now.Add(OldSAGrace)
		} else {
			t.freeKeypair(p.prev)
			p.prev = nil
		}
	}
	if p.next != nil && now.Sub(p.next.created) >= UnconfirmedSATimeout {
		t.freeKeypair(p.next)
		p.next = nil
	}
	if kp := p.cur.Load(); kp != nil && !kp.sendable(now) {
		t.freeKeypair(kp)
		p.cur.Store(nil)
	}
	if len(p.staged) > 0 && p.hs == nil {
		// Packets wait and no handshake runs: the ask was dropped
		// (a full queue) or an earlier handshake gave up.
		t.startHandshakeLocked(p, now)
	}
	if since(p.awaitingSince.Load(), now) >= NewHandshakeAfter && p.hs == nil {
		// Armed again by the next data sent.
		p.awaitingSince.Store(0)
		t.logf("tunnel: nothing from %v at %v for %v: a new handshake along every path", p.ula, p.endpointAddr(), NewHandshakeAfter)
		t.initiateLocked(p, now)
	}
	if since(p.owingSince.Load(), now) >= KeepaliveTimeout {
		t.sendDummy(p, now)
	}
	var ka [1]byte
	if p.endpoint.Load() != nil && now.Sub(time.Unix(0, p.lastSent.Load())) >= KeepaliveInterval {
		t.send(p, [][]byte{esp.AppendKeepalive(ka[:0])}, now)
	}
	if len(p.paths) > 1 && now.Sub(p.pathsKept) >= KeepaliveInterval {
		// The paths data does not take, kept open for a fallback.
		p.pathsKept = now
		t.sendOthers(p, esp.AppendKeepalive(ka[:0]))
	}
}

// since is how long before now the Unix-nanosecond time ns was, or 0 if
// ns is 0 (not set).
func since(ns int64, now time.Time) time.Duration {
	if ns == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, ns))
}
