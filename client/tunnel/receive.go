package tunnel

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/openbtmm/btmm/client/tunnel/esp"
	"github.com/openbtmm/btmm/client/tunnel/tun"
)

// maxReadErrors bounds consecutive transient socket errors before readUDP
// gives up (wireguard-go's deathSpiral).
const maxReadErrors = 10

// readUDP is the inbound stage for one socket: read a batch, demultiplex
// each datagram into ESP, handshake or keepalive, open the ESP in place and
// write the batch of inner packets into the TUN device at once. Handshake
// messages go to the worker.
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
	if t.xch.cur.Load() != nil && t.exchanged(b, endpointAddrPort(ep)) {
		return 0
	}
	kind, payload := esp.Classify(b)
	switch kind {
	case esp.ESP:
		if inner, ok := t.receiveESP(payload, ep); ok {
			return len(inner)
		}
	case esp.NonESP:
		// Handshakes run on the worker: copy the message out of the
		// batch buffer, which the next read reuses.
		t.queue(work{kind: workMessage, msg: bytes.Clone(payload), src: endpointAddrPort(ep), ep: ep})
	case esp.Keepalive:
		// Not a sign of life (RFC 3948 §4), but maybe a peer that just
		// learnt of this host (nudged).
		t.nudge(endpointAddrPort(ep), false)
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

// receiveESP opens pkt in place under its keypair's receive lock. On
// success the inner packet is pkt[esp.HeaderLen:][:len(inner)].
func (t *Tunnel) receiveESP(pkt []byte, ep conn.Endpoint) (inner []byte, ok bool) {
	spi := esp.PacketSPI(pkt)
	t.mu.RLock()
	kp := t.bySPI[spi]
	t.mu.RUnlock()
	if kp == nil || kp.peer.removed.Load() { // unknown, or reserved for a pending initiation
		t.ctr.unknownSPI.Add(1)
		t.nudge(endpointAddrPort(ep), true)
		return nil, false
	}
	p := kp.peer
	kp.recvMu.Lock()
	inner, nh, err := kp.recv.Open(pkt[esp.HeaderLen:esp.HeaderLen], pkt)
	kp.recvMu.Unlock()
	// A dummy packet (Announce) is authentic and carries nothing: it
	// confirms and moves like data, and is delivered nowhere.
	dummy := err == esp.ErrDummy
	if err != nil && !dummy {
		p.dropsMu.Lock()
		p.drops.Add(err)
		p.dropsMu.Unlock()
		return nil, false
	}
	// Authentic from here on.
	if !dummy && (nh != esp.NextHeaderIPv6 || len(inner) < ipv6HeaderLen || inner[0]>>4 != 6 ||
		netip.AddrFrom16([16]byte(inner[8:24])) != p.ula) {
		p.badSource.Add(1)
		return nil, false
	}
	src := endpointAddrPort(ep)
	if !kp.confirmed.Load() || src != p.endpointAddr() {
		t.authentic(p, kp, src)
	}
	t.receivedAuthentic(kp, !dummy)
	if dummy {
		return nil, false
	}
	p.rxPackets.Add(1)
	p.rxBytes.Add(uint64(len(inner)))
	return inner, true
}

// authentic takes the rare consequences of an authentic packet that came
// on a keypair other than the current one, or from a new address.
func (t *Tunnel) authentic(p *peer, kp *keypair, src netip.AddrPort) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed.Load() {
		return
	}
	if kp == p.next {
		// Key confirmation: the initiator held the PSK. Only now may the
		// responder-side pair replace the working one; what waited for
		// it goes out from the worker.
		t.rotateLocked(p, kp, t.now())
		p.next = nil
		kp.confirmed.Store(true)
		if len(p.staged) > 0 {
			t.queue(work{kind: workFlush, peer: p})
		}
	}
	if src != p.endpointAddr() {
		// Roaming (RFC 6281 §7.3): follow the first authentic packet.
		t.logf("tunnel: peer %v moved %v -> %v", p.ula, p.endpointAddr(), src)
		t.setEndpoint(p, src)
		p.roams.Add(1)
	}
}

// receivedAuthentic notes an authentic packet under kp, data if data: the
// peer answers (nothing is awaited from it any more), something is owed
// to it if it sent data (Paths in the package documentation), and kp is
// still in use (SA life cycle). The loads keep the shared cache lines
// clean while nothing changes.
func (t *Tunnel) receivedAuthentic(kp *keypair, data bool) {
	p := kp.peer
	if p.awaitingSince.Load() != 0 {
		p.awaitingSince.Store(0)
	}
	if data && p.owingSince.Load() == 0 {
		p.owingSince.CompareAndSwap(0, t.now().UnixNano())
	}
	if !kp.received.Load() {
		kp.received.Store(true)
	}
}
