package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/openbtmm/btmm/client/tunnel/esp"
	"github.com/openbtmm/btmm/client/tunnel/handshake"
	"github.com/openbtmm/btmm/client/tunnel/tun"
)

// maxReadErrors bounds consecutive transient socket errors before readUDP
// gives up (wireguard-go's deathSpiral).
const maxReadErrors = 10

// readUDP is the inbound stage for one socket: read a batch, demultiplex
// each datagram into ESP, handshake or keepalive, open the ESP in place and
// write the batch of inner packets into the TUN device at once.
func (t *Tunnel) readUDP(ctx context.Context, recv conn.ReceiveFunc) error {
	batch := t.bind.BatchSize()
	bufs := make([][]byte, batch)
	for i := range bufs {
		// Full size: with UDP GRO the kernel hands over a train of
		// datagrams in one buffer before it is split, and the TUN
		// device's GRO coalesces TCP segments into the first buffer.
		bufs[i] = make([]byte, maxUDPPacket)
	}
	sizes := make([]int, batch)
	eps := make([]conn.Endpoint, batch)
	wbufs := make([][]byte, 0, batch)
	var spiral int
	for {
		n, err := recv(bufs, sizes, eps)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			t.ctr.udpReadErrors.Add(1)
			if spiral++; spiral >= maxReadErrors {
				return err
			}
			time.Sleep(time.Duration(spiral) * 10 * time.Millisecond)
			continue
		}
		spiral = 0
		wbufs = wbufs[:0]
		for i := range n {
			if sizes[i] == 0 {
				continue
			}
			if inner := t.receive(bufs[i][:sizes[i]], eps[i]); inner > 0 {
				// The inner packet sits at bufs[i][esp.HeaderLen:] ==
				// bufs[i][tun.Offset:].
				wbufs = append(wbufs, bufs[i][:tun.Offset+inner])
			}
			eps[i] = nil
		}
		if len(wbufs) > 0 {
			if err := t.cfg.TUN.Write(wbufs); err != nil {
				t.ctr.tunWriteErrors.Add(1)
			}
		}
	}
}

// receive handles one datagram and returns the length of the inner packet
// to deliver (0: nothing).
func (t *Tunnel) receive(b []byte, ep conn.Endpoint) int {
	src := endpointAddrPort(ep)
	kind, payload := esp.Classify(b)
	switch kind {
	case esp.ESP:
		if inner, ok := t.receiveESP(payload, src); ok {
			return len(inner)
		}
	case esp.NonESP:
		t.receiveHandshake(payload, src, ep)
	case esp.Keepalive:
		// Not a sign of life (RFC 3948 §4).
	default:
		t.ctr.invalidUDP.Add(1)
	}
	return 0
}

// endpointAddrPort is a received datagram's source, IPv4 unmapped.
func endpointAddrPort(ep conn.Endpoint) netip.AddrPort {
	var ap netip.AddrPort
	if se, ok := ep.(*conn.StdNetEndpoint); ok {
		ap = se.AddrPort
	} else {
		ap, _ = netip.ParseAddrPort(ep.DstToString())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// receiveESP opens pkt in place. On success the inner packet is
// pkt[esp.HeaderLen:][:len(inner)].
func (t *Tunnel) receiveESP(pkt []byte, src netip.AddrPort) (inner []byte, ok bool) {
	spi := esp.PacketSPI(pkt)
	t.mu.RLock()
	p := t.bySPI[spi]
	t.mu.RUnlock()
	if p == nil {
		t.ctr.unknownSPI.Add(1)
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var kp *keypair
	switch {
	case p.removed:
	case p.cur != nil && p.cur.recv.SPI() == spi:
		kp = p.cur
	case p.next != nil && p.next.recv.SPI() == spi:
		kp = p.next
	case p.prev != nil && p.prev.recv.SPI() == spi:
		kp = p.prev
	}
	if kp == nil { // reserved for a pending initiation, or just freed
		t.ctr.unknownSPI.Add(1)
		return nil, false
	}
	inner, nh, err := kp.recv.Open(pkt[esp.HeaderLen:esp.HeaderLen], pkt)
	// A dummy packet (Announce) is authentic and carries nothing: it
	// confirms and moves like data, and is delivered nowhere.
	dummy := err == esp.ErrDummy
	if err != nil && !dummy {
		p.stat.Drops.Add(err)
		return nil, false
	}
	// Authentic from here on.
	if !dummy && (nh != esp.NextHeaderIPv6 || len(inner) < ipv6HeaderLen || inner[0]>>4 != 6 ||
		netip.AddrFrom16([16]byte(inner[8:24])) != p.ula) {
		p.stat.BadSource++
		return nil, false
	}
	now := time.Now()
	if kp == p.next {
		// Key confirmation: the initiator held the PSK. Only now may the
		// responder-side pair replace the working one.
		t.rotateLocked(p, kp, now)
		p.next = nil
	}
	if src != p.endpoint {
		// Roaming (RFC 6281 §7.3): follow the first authentic packet.
		t.logf("tunnel: peer %v moved %v -> %v", p.ula, p.endpoint, src)
		t.setEndpointLocked(p, src)
		p.stat.Roams++
	}
	if kp == p.cur && len(p.staged) > 0 {
		t.flushLocked(p, now)
	}
	if dummy {
		return nil, false
	}
	p.stat.RxPackets++
	p.stat.RxBytes += uint64(len(inner))
	return inner, true
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

// rotateLocked makes kp current, keeping the old current pair's inbound SA
// for OldSAGrace.
func (t *Tunnel) rotateLocked(p *peer, kp *keypair, now time.Time) {
	if p.prev != nil {
		t.freeKeypair(p.prev)
	}
	p.prev, p.prevExpire = p.cur, now.Add(OldSAGrace)
	p.cur = kp
	p.lastHS = now
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
		if p.removed || p.hs == nil || p.hs.Index() != idx {
			t.ctr.badHandshake.Add(1)
			return
		}
		if msg[0] == handshake.TypeCookieReply {
			if p.hs.ConsumeCookie(msg) != nil {
				p.stat.HandshakeFailures++
				return
			}
			// Retransmit at once, now with a mac2.
			p.hsTries--
			t.retryHandshakeLocked(p, time.Now())
			return
		}
		t.finishLocked(p, msg, src)
	default:
		t.ctr.badHandshake.Add(1)
	}
}

// finishLocked completes our initiation with its response.
func (t *Tunnel) finishLocked(p *peer, msg []byte, src netip.AddrPort) {
	res, err := p.hs.Finish(msg)
	if err != nil {
		// The Initiation stays usable: a forged response cannot cancel
		// the handshake. Another PSK ends here (handshake.ErrAuth).
		p.stat.HandshakeFailures++
		t.logf("tunnel: response from %v for %v: %v", src, p.ula, err)
		return
	}
	t.mu.Lock()
	delete(t.byIndex, p.hs.Index())
	t.mu.Unlock()
	p.hs = nil
	if res.PeerULA != p.ula || res.PeerStatic != p.static {
		t.freeSPI(p.hsSPI)
		p.stat.HandshakeFailures++
		return
	}
	now := time.Now()
	kp, err := t.newKeypair(res, true, now)
	if err != nil {
		t.freeSPI(p.hsSPI)
		t.ctr.handshakeErrors.Add(1)
		return
	}
	t.rotateLocked(p, kp, now)
	// The response authenticated with the PSK: its source is the peer.
	if src != p.endpoint {
		t.setEndpointLocked(p, src)
		p.stat.Roams++
	}
	t.flushLocked(p, now)
}

// respond answers an initiation. The new pair goes to p.next: it receives
// at once but sends nothing until an ESP packet confirms it.
func (t *Tunnel) respond(msg []byte, src netip.AddrPort, ep conn.Endpoint) {
	spi, err := t.allocSPI(nil)
	if err != nil {
		t.ctr.handshakeErrors.Add(1)
		return
	}
	// Against floods (WireGuard's scheme): under load, an initiation
	// without a mac2 made from a cookie for its source gets a cookie reply
	// instead of DH work, and sources that proved their address are held
	// to a rate each.
	underLoad := t.load.initiation(time.Now())
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
	if p.removed || p.static != res.PeerStatic {
		t.freeSPI(spi)
		t.ctr.badHandshake.Add(1)
		return
	}
	now := time.Now()
	kp, err := t.newKeypair(res, false, now)
	if err != nil {
		t.freeSPI(spi)
		t.ctr.handshakeErrors.Add(1)
		return
	}
	t.mu.Lock()
	t.bySPI[spi] = p
	t.mu.Unlock()
	if p.next != nil {
		t.freeKeypair(p.next)
	}
	p.next = kp
	// Reply to where the initiation came from, but do not move the
	// endpoint: the initiator is not authenticated until its first ESP.
	b := esp.AppendNonESPMarker(make([]byte, 0, esp.NonESPMarkerLen+len(reply)))
	b = append(b, reply...)
	if err := t.bind.Send([][]byte{b}, ep); err != nil {
		t.sendFailedLocked(p, err)
	}
}
