// Package tunnel is the per-peer data path of a Back to My Mac tunnel
// (RFC 6281 §2, §7.3): it reads inner IPv6 packets from the TUN device, seals
// them into ESP-in-UDP (packages esp, replay) for the peer that owns the
// destination ULA, runs the Noise handshake (package handshake) to get the SAs,
// and opens inbound ESP back into the TUN device.
//
// # Goroutines and locking
//
// Run starts the TUN reader (outbound), one UDP reader per socket of the
// Bind (inbound; IPv4 and IPv6), the handshake worker and a timer
// (retransmission, expiry, keepalives). As in wireguard-go, each direction
// owns what it touches on the data path, and neither waits for the other:
//
//   - A keypair's outbound SA is sealed under the keypair's sendMu, its
//     inbound SA opened under its recvMu (an esp.SA is not safe for
//     concurrent use). Sending never takes a lock that receiving holds.
//   - The data path finds what it needs without the peer's lock: the
//     current keypair and the endpoint are atomic pointers, swapped whole
//     by the control path; counters are atomic.
//   - peer.mu guards the control state: the handshake in flight, the
//     previous and the next keypair, the staged packets. The data path
//     takes it only for rare events: to stage a packet when there is no
//     keypair, to confirm a responder's keypair on its first packet, to
//     follow a peer that moved.
//   - Handshakes (each costs Diffie-Hellman) run on the handshake worker
//     and the timer, never on a data goroutine: the UDP readers queue the
//     handshake messages they receive, the TUN reader asks for an
//     initiation. The worker flushes staged packets in one batch.
//   - Tunnel.mu guards the maps: peers by ULA, keypairs by inbound SPI,
//     peers by pending initiation index.
//
// Lock order: peer.mu, then a keypair's sendMu or Tunnel.mu; never the
// reverse.
//
// The clock is Config.Now, so that tests drive time (Tunnel.tick runs the
// timers once) instead of sleeping.
//
// # Batches
//
// On this machine class a system call costs about a microsecond, as much as
// sealing a full-sized packet, so packets move in batches end to end, as in
// wireguard-go: the TUN device hands over up to BatchSize packets per read
// (one TCP super-packet split by the kernel's offload, golang.zx2c4.com/
// wireguard/tun), they are sealed in place and go out in one sendmmsg, with
// UDP GSO when the kernel has it (golang.zx2c4.com/wireguard/conn's
// StdNetBind); inbound, one recvmmsg (with UDP GRO) fills a batch, each
// datagram is opened in place and the batch goes into the TUN device in one
// write, where TCP segments are coalesced again (GRO). Buffers are
// allocated once per stage and this package copies no packet: the ESP
// header is written into the headroom in front of the inner packet
// (tun.Offset) and opened inner packets stay where the datagram was read.
//
// Sealing and opening run in those goroutines, not on a pool of workers as
// in wireguard-go: one core seals AES-256-GCM at about 2 GB/s (16 Gbit/s,
// 1400-octet packets), more than a host's links carry, and a single stage
// per direction keeps sequence numbers in order with no reordering queue.
// make bench-tunnel compares the result with wireguard-go, one way and
// both ways at once.
//
// # Moving
//
// The sockets listen on every address, so a new local address needs no
// rebinding; the SAs are bound to the ULAs and stay. A peer's endpoint
// follows the first authentic packet from a new address (RFC 6281
// §7.3.2) and whatever the daemon learns from the DNS (SetPeer); after a
// local change the daemon calls Announce, one authenticated dummy packet
// per peer, so the peers follow before the DNS tells them.
//
// # Paths
//
// A peer may be reachable at more than one endpoint: its IPv4 endpoint
// (a NAT's mapping) and its global IPv6 address, say (Peer.Endpoints).
// Data goes to one of them, the endpoint; the others are kept open and
// tried again whenever a path may have failed:
//
//   - Every initiation (and its retransmissions) goes to every path. The
//     responder answers the first copy to arrive (the copies carry one
//     timestamp, so it refuses the others as replays), and the initiator
//     sends its data to wherever the response came from: the path that
//     answered first wins.
//   - NAT keepalives go to every path, so that the NATs and stateful
//     firewalls on an unused path keep it open for a fallback. On
//     SetPeer they go at once, which punches the way for the peer's own
//     packets (hole punching, also through an IPv6 firewall that takes
//     no new flow from outside).
//   - A path is taken for dead, as in WireGuard, when data went out and
//     nothing authentic came back for NewHandshakeAfter: a new handshake
//     then goes to every path, and the one that answers takes over. So
//     that a one-way stream is not taken for a dead path, a peer that
//     received data and sent nothing back for KeepaliveTimeout sends an
//     authenticated dummy packet.
//
// # Nudges
//
// A tunnel comes up without waiting for a timer when a peer shows a sign
// of life (nudged; at WireGuard's rate per source address):
//
//   - A NAT keepalive from a peer's path while a handshake with it is
//     pending sends the initiation again at once. The peer punches when it
//     learns of this host (SetPeer), and an initiation it refused a moment
//     before, not knowing this host yet, is taken now: a host that
//     restarted initiates from its cached peers before its records reach
//     them.
//   - ESP from a peer's path for an SA this host does not have, when it
//     has none to send on, starts a handshake: the peer still sends on
//     the SAs this host had before it restarted.
//
// And the initiator of a handshake that has nothing staged sends an
// authenticated dummy packet as soon as the response arrives, so that the
// responder starts sending on the new pair at once (WireGuard sends a
// keepalive there too).
//
// # Floods
//
// An initiation costs the responder four X25519 operations. Above
// UnderLoadInitiations a second, an initiation gets WireGuard's answer: a
// cookie reply unless it carries a mac2 made from a cookie for its source
// address, and a rate per source that has proven its address
// (golang.zx2c4.com/wireguard/ratelimiter).
//
// # SA life cycle (per peer)
//
//	           Finish (initiator, confirmed)
//	none ─────────────────────────────────────► cur ──rekey──► prev (recv only, OldSAGrace)
//	  │                                          ▲
//	  └─ Respond (responder) ──► next ───────────┘
//	     (recv only; send held)   first authentic ESP under next.recv
//
// A responder-side pair (next) is never used to send and never replaces cur
// until an ESP packet authenticates under its inbound SA: in Noise IKpsk2 only
// that proves the initiator held the PSK (handshake package doc).
//
// prev is kept beyond OldSAGrace while packets still authenticate under it
// (up to RejectAfterTime): when both ends initiate at once, each ends up
// sending on one new pair and the peer on the other, whose partner here
// is prev, until the next rekey (WireGuard keeps its previous keypair
// until the next rotation for the same reason).
package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/ratelimiter"

	"github.com/openbtmm/btmm/client/tunnel/esp"
	"github.com/openbtmm/btmm/client/tunnel/handshake"
)

// TUN is what the tunnel needs of a TUN device. *tun.Device satisfies it.
// Packets sit at bufs[i][tun.Offset:] on both Read and Write.
type TUN interface {
	Read(bufs [][]byte, sizes []int) (int, error)
	Write(bufs [][]byte) error
	MTU() int
	BatchSize() int
	Close() error
}

// Config is what New needs.
type Config struct {
	// TUN is the device; Run closes it when it returns.
	TUN TUN
	// Port is the local UDP port of the tunnel, the one NAT-PMP maps (0:
	// any, see Tunnel.Port). New binds it for IPv4 and IPv6 on every
	// address, so a change of local address needs no rebinding.
	Port uint16
	// Bind makes the sockets; nil means conn.NewStdNetBind(), batched
	// sendmmsg/recvmmsg with UDP GSO/GRO where the kernel has them. Run
	// closes it when it returns.
	Bind conn.Bind
	// Static is this host's key pair; PSK is Noise's pre-shared key, the
	// same on all of the user's hosts (package daemon says how it is made).
	Static handshake.KeyPair
	PSK    [32]byte
	// Suites is the preference order of ESP suites; nil means
	// handshake.DefaultSuites.
	Suites []handshake.Suite
	// ULA is this host's address on the TUN device.
	ULA netip.Addr
	// Allow is asked about an initiator's static key before the responder
	// keeps any state; nil allows every key of a peer set with SetPeer
	// (which is always required as well).
	Allow func(peerStatic [32]byte) bool
	// Logf logs at debug level; nil discards.
	Logf func(format string, args ...any)
	// KeyLog, if not nil, receives both SAs of every new keypair as lines
	// of Wireshark's esp_sa table (esp.SA.AppendKeyLog), for debugging
	// with an independent ESP decoder. It holds keys: off by default.
	KeyLog io.Writer
	// Now is the clock of the timers, the SA lifetimes and the handshake's
	// timestamps; nil means time.Now. Tests inject a clock they advance.
	Now func() time.Time
}

// Peer is one of the user's other hosts, as the watcher sees it.
type Peer struct {
	ULA netip.Addr
	// Endpoints are where the peer may be reached, most preferred first:
	// its global IPv6 address and its IPv4 endpoint, say. Every handshake
	// goes to all of them, and the first that answers carries the data
	// (see Paths in the package documentation).
	Endpoints []netip.AddrPort
	Static    [32]byte
}

// PeerStatus is a snapshot of one peer's state and counters.
type PeerStatus struct {
	ULA      netip.Addr
	Endpoint netip.AddrPort
	Static   [32]byte
	// HasSA reports a confirmed SA pair; SAAge is its age, Suite its
	// cipher suite and LastHandshake when it was made.
	HasSA         bool
	Suite         esp.Suite
	SAAge         time.Duration
	LastHandshake time.Time
	// HandshakePending reports an initiation waiting for its response.
	HandshakePending bool

	TxBytes, TxPackets uint64 // inner octets and packets sealed and sent
	RxBytes, RxPackets uint64 // inner octets and packets opened and delivered

	// Drops counts esp.SA.Open failures on this peer's SAs by reason
	// (esp.ErrReplay, esp.ErrAuth, ...).
	Drops esp.DropCounts
	// BadSource: authentic packets whose inner source is not the peer's ULA.
	BadSource uint64
	// StagedDropped: packets dropped from the full staging queue or when a
	// handshake gave up. Staged is the queue's current length.
	Staged        int
	StagedDropped uint64
	// Handshakes: SA pairs put to use, the first and each rekey, on
	// either side. HandshakeFailures: responses that did not authenticate
	// (e.g. another PSK) or did not match the peer. HandshakeTimeouts:
	// handshakes given up after MaxInitiationAttempts.
	Handshakes        uint64
	HandshakeFailures uint64
	HandshakeTimeouts uint64
	// SendErrors: UDP writes that failed. Roams: endpoint changes learnt
	// from authentic packets.
	SendErrors uint64
	Roams      uint64
}

// Counters are the tunnel-wide drops that belong to no peer.
type Counters struct {
	UnknownSPI   uint64 // ESP for an SPI we have no SA for
	UnknownDest  uint64 // TUN packets to no peer's ULA
	NotIPv6      uint64 // TUN packets that are not IPv6
	InvalidUDP   uint64 // UDP payloads Classify rejects
	BadHandshake uint64 // handshake messages refused before a peer was known
	// HandshakeQueueFull: handshake messages dropped because the worker
	// was behind (a flood; the senders retransmit).
	HandshakeQueueFull uint64
	TUNWriteErrors     uint64
	UDPReadErrors      uint64
	HandshakeErrors    uint64 // local failures (randomness, ...)
	// Under load (a flood of initiations): initiations answered with a
	// cookie reply instead of a handshake, and initiations from a proven
	// source over its rate, dropped.
	CookieReplies uint64
	RateLimited   uint64
}

// Tunnel is the data path for all peers of this host.
type Tunnel struct {
	cfg  Config
	bind conn.Bind
	recv []conn.ReceiveFunc
	port uint16
	hcfg handshake.Config
	resp *handshake.Responder
	logf func(string, ...any)
	now  func() time.Time

	// work feeds the handshake worker: messages received, initiations
	// and flushes asked for by the data path.
	work chan work

	load      loadMeter
	limiter   ratelimiter.Ratelimiter // initiations per source address under load
	nudges    ratelimiter.Ratelimiter // nudges per source address
	xch       exchanges               // a datagram to and from a non-peer (Exchange)
	closeOnce sync.Once
	closeErr  error

	mu      sync.RWMutex
	peers   map[netip.Addr]*peer
	bySPI   map[uint32]*keypair // inbound SPI → keypair; nil value: reserved
	byIndex map[uint32]*peer    // pending initiation index → peer

	ctr struct {
		unknownSPI, unknownDest, notIPv6, invalidUDP, badHandshake atomic.Uint64
		tunWriteErrors, udpReadErrors, handshakeErrors             atomic.Uint64
		cookieReplies, rateLimited, handshakeQueueFull             atomic.Uint64
	}
}

// keypair is the two SAs one handshake made. Its fields other than the
// SAs' state are set before it is published and never change, but for
// dead.
type keypair struct {
	peer      *peer
	created   time.Time
	initiator bool

	// sendMu is held while sealing: by the TUN reader for a run of
	// packets, by the worker for a flush, by Announce.
	sendMu sync.Mutex
	send   *esp.SA
	sent   atomic.Uint64 // packets sealed

	// recvMu is held while opening: the inbound SA's replay window is
	// shared by the UDP readers (one per socket).
	recvMu sync.Mutex
	recv   *esp.SA

	// dead is set when the outbound SA must not seal again (sequence
	// numbers exhausted); the data path then stages and asks for a
	// handshake.
	dead atomic.Bool
	// confirmed: the peer is known to hold the keys. At once for the
	// initiator's pair; for the responder's, on its first authentic
	// packet (the handshake package doc says why).
	confirmed atomic.Bool
	// received is set when a packet authenticates under recv; cleared
	// when the pair becomes prev and at each OldSAGrace after, so that a
	// prev still in use is kept (the package doc, SA life cycle).
	received atomic.Bool
}

// sendable reports whether the data path may seal on kp at now.
func (kp *keypair) sendable(now time.Time) bool {
	return kp != nil && !kp.dead.Load() && now.Sub(kp.created) < RejectAfterTime
}

// needsHandshake reports whether a new keypair should replace kp (which
// may be nil): it cannot send, or it is due for a rekey.
func (kp *keypair) needsHandshake(now time.Time) bool {
	if !kp.sendable(now) {
		return true
	}
	age := now.Sub(kp.created)
	return kp.sent.Load() >= RekeyAfterPackets ||
		(kp.initiator && age >= RekeyAfterTime) || age >= RekeyAfterTimeResponder
}

// endpoint is where a peer is reached, in both forms.
type endpoint struct {
	addr netip.AddrPort
	ep   conn.Endpoint // as the Bind takes it
}

type peer struct {
	ula netip.Addr

	// Read by the data path without a lock.
	cur      atomic.Pointer[keypair]  // the pair to send on; nil: stage
	endpoint atomic.Pointer[endpoint] // nil: unknown
	removed  atomic.Bool
	lastSent atomic.Int64 // Tunnel.now in Unix nanoseconds, for keepalives
	// For dead paths, in Tunnel.now Unix nanoseconds, 0 when not set:
	// awaitingSince is when data first went out with nothing authentic
	// back since; owingSince when data first came in with nothing
	// authentic sent back since (WireGuard's new-handshake and passive
	// keepalive timers).
	awaitingSince, owingSince atomic.Int64
	// initiating is set while an initiation asked of the worker has not
	// been handled, so that a burst of packets asks once.
	initiating                             atomic.Bool
	txPackets, txBytes, rxPackets, rxBytes atomic.Uint64
	badSource, roams, sendErrors           atomic.Uint64

	// dropsMu guards drops, counted by the UDP readers.
	dropsMu sync.Mutex
	drops   esp.DropCounts

	// mu guards the control state below.
	mu         sync.Mutex
	static     [32]byte
	paths      []endpoint // the Peer's Endpoints, parsed
	pathsKept  time.Time  // when the unused paths last got a keepalive
	prev, next *keypair
	prevExpire time.Time
	staged     [][]byte // each: esp.HeaderLen headroom, packet, trailer room
	hs         *handshake.Initiation
	hsMsg      []byte // hs's message as sent (marker included), for a nudge
	hsSPI      uint32
	hsSent     time.Time
	hsTries    int
	lastHS     time.Time
	stat       struct{ stagedDropped, handshakes, handshakeFailures, handshakeTimeouts uint64 }
}

// New binds the tunnel port and makes a Tunnel. It fails if the port
// cannot be bound or the Config's keys are unusable.
func New(cfg Config) (*Tunnel, error) {
	t := &Tunnel{
		cfg:     cfg,
		bind:    cfg.Bind,
		hcfg:    handshake.Config{Static: cfg.Static, PSK: cfg.PSK, Suites: cfg.Suites, Now: cfg.Now},
		logf:    cfg.Logf,
		now:     cfg.Now,
		work:    make(chan work, workQueueLen),
		peers:   make(map[netip.Addr]*peer),
		bySPI:   make(map[uint32]*keypair),
		byIndex: make(map[uint32]*peer),
	}
	if t.logf == nil {
		t.logf = func(string, ...any) {}
	}
	if t.now == nil {
		t.now = time.Now
	}
	r, err := handshake.NewResponder(t.hcfg, t.allow)
	if err != nil {
		return nil, fmt.Errorf("tunnel: %w", err)
	}
	t.resp = r
	if t.bind == nil {
		t.bind = conn.NewStdNetBind()
	}
	t.recv, t.port, err = t.bind.Open(cfg.Port)
	if err != nil {
		return nil, fmt.Errorf("tunnel: binding UDP port %d: %w", cfg.Port, err)
	}
	t.limiter.Init()
	t.nudges.Init()
	return t, nil
}

// Port is the bound local UDP port.
func (t *Tunnel) Port() uint16 { return t.port }

// allow admits an initiator only if it is a known peer and Config.Allow agrees.
func (t *Tunnel) allow(k [32]byte) bool {
	if t.cfg.Allow != nil && !t.cfg.Allow(k) {
		return false
	}
	for _, p := range t.appendPeers(nil) {
		p.mu.Lock()
		known := p.static == k
		p.mu.Unlock()
		if known {
			return true
		}
	}
	return false
}

// SetPeer adds a peer or updates it. New endpoints only change where
// packets go; the SAs stay (roaming). A new static key drops the SAs.
func (t *Tunnel) SetPeer(pc Peer) {
	t.mu.Lock()
	p := t.peers[pc.ULA]
	if p == nil {
		p = &peer{ula: pc.ULA, static: pc.Static}
		t.setPaths(p, pc.Endpoints)
		t.peers[pc.ULA] = p
		t.mu.Unlock()
		p.mu.Lock()
		t.punchLocked(p)
		p.mu.Unlock()
		return
	}
	t.mu.Unlock()

	p.mu.Lock()
	defer p.mu.Unlock()
	if t.setPaths(p, pc.Endpoints) {
		t.punchLocked(p)
	}
	if p.static != pc.Static {
		p.static = pc.Static
		t.resetLocked(p)
	}
}

// setPaths makes eps (unmapped, invalid and repeated ones left out) p's
// paths, and reports whether they changed. The endpoint stays if it is
// one of them (it may be the one that answered first); else it becomes
// the first. Callers hold p.mu, or p is new.
func (t *Tunnel) setPaths(p *peer, eps []netip.AddrPort) bool {
	var paths []endpoint
	for _, ap := range eps {
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if !ap.IsValid() || slices.ContainsFunc(paths, func(e endpoint) bool { return e.addr == ap }) {
			continue
		}
		ep, err := t.bind.ParseEndpoint(ap.String())
		if err != nil {
			continue
		}
		paths = append(paths, endpoint{addr: ap, ep: ep})
	}
	if slices.EqualFunc(paths, p.paths, func(a, b endpoint) bool { return a.addr == b.addr }) {
		return false
	}
	p.paths = paths
	if cur := p.endpointAddr(); !slices.ContainsFunc(paths, func(e endpoint) bool { return e.addr == cur }) {
		if len(paths) == 0 {
			p.endpoint.Store(nil)
		} else {
			e := paths[0]
			p.endpoint.Store(&e)
		}
	}
	return true
}

// punchLocked sends a NAT keepalive along every path to p at once, so
// that the first packet to a new endpoint leaves as soon as the peer is
// known: through a NAT or a firewall that filters by destination, it
// opens the way for the peer's packets, which the peer sends the same way
// when it learns of this host (hole punching). The peer takes it for
// nothing (RFC 3948 §2.3). Callers hold p.mu.
func (t *Tunnel) punchLocked(p *peer) {
	var ka [1]byte
	t.sendAll(p, esp.AppendKeepalive(ka[:0]), t.now())
}

// setEndpoint points p at ap (unmapped), and reports whether that is a
// new endpoint. Callers hold p.mu, or p is new.
func (t *Tunnel) setEndpoint(p *peer, ap netip.AddrPort) bool {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if old := p.endpoint.Load(); old != nil && old.addr == ap {
		return false
	}
	if !ap.IsValid() {
		p.endpoint.Store(nil)
		return false
	}
	// A fresh endpoint has no sticky source address: after a move the
	// kernel picks the source again.
	ep, err := t.bind.ParseEndpoint(ap.String())
	if err != nil {
		p.endpoint.Store(nil)
		return false
	}
	p.endpoint.Store(&endpoint{addr: ap, ep: ep})
	return true
}

// endpointAddr is where p is reached, or the zero AddrPort.
func (p *peer) endpointAddr() netip.AddrPort {
	if e := p.endpoint.Load(); e != nil {
		return e.addr
	}
	return netip.AddrPort{}
}

// RemovePeer forgets a peer and its SAs.
func (t *Tunnel) RemovePeer(ula netip.Addr) {
	t.mu.Lock()
	p := t.peers[ula]
	delete(t.peers, ula)
	t.mu.Unlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removed.Store(true)
	t.resetLocked(p)
	t.resp.Forget(p.static)
}

// resetLocked drops all SAs, the pending handshake and the staged packets.
func (t *Tunnel) resetLocked(p *peer) {
	t.mu.Lock()
	for spi, kp := range t.bySPI {
		if kp != nil && kp.peer == p {
			delete(t.bySPI, spi)
		}
	}
	for idx, q := range t.byIndex {
		if q == p {
			delete(t.byIndex, idx)
		}
	}
	if p.hs != nil {
		delete(t.bySPI, p.hsSPI)
	}
	t.mu.Unlock()
	p.cur.Store(nil)
	p.prev, p.next, p.hs = nil, nil, nil
	p.dropStagedLocked()
}

// dropStagedLocked empties the staging queue, counting its packets.
func (p *peer) dropStagedLocked() {
	p.stat.stagedDropped += uint64(len(p.staged))
	clear(p.staged)
	p.staged = p.staged[:0]
}

// appendPeers appends every peer to ps, for work that takes each peer's
// lock in turn (which must not be done under Tunnel.mu).
func (t *Tunnel) appendPeers(ps []*peer) []*peer {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, p := range t.peers {
		ps = append(ps, p)
	}
	return ps
}

// Status returns a snapshot of every peer.
func (t *Tunnel) Status() []PeerStatus {
	ps := t.appendPeers(nil)
	now := t.now()
	out := make([]PeerStatus, 0, len(ps))
	for _, p := range ps {
		s := PeerStatus{
			ULA: p.ula, Endpoint: p.endpointAddr(),
			TxPackets: p.txPackets.Load(), TxBytes: p.txBytes.Load(),
			RxPackets: p.rxPackets.Load(), RxBytes: p.rxBytes.Load(),
			BadSource: p.badSource.Load(), Roams: p.roams.Load(), SendErrors: p.sendErrors.Load(),
		}
		if kp := p.cur.Load(); kp != nil {
			s.HasSA = true
			s.SAAge = now.Sub(kp.created)
			s.Suite = kp.send.Suite()
		}
		p.dropsMu.Lock()
		s.Drops = p.drops
		p.dropsMu.Unlock()
		p.mu.Lock()
		s.Static = p.static
		s.LastHandshake = p.lastHS
		s.HandshakePending = p.hs != nil
		s.Staged = len(p.staged)
		s.StagedDropped = p.stat.stagedDropped
		s.Handshakes = p.stat.handshakes
		s.HandshakeFailures = p.stat.handshakeFailures
		s.HandshakeTimeouts = p.stat.handshakeTimeouts
		p.mu.Unlock()
		out = append(out, s)
	}
	return out
}

// Counters returns the tunnel-wide drop counters.
func (t *Tunnel) Counters() Counters {
	return Counters{
		UnknownSPI:      t.ctr.unknownSPI.Load(),
		UnknownDest:     t.ctr.unknownDest.Load(),
		NotIPv6:         t.ctr.notIPv6.Load(),
		InvalidUDP:      t.ctr.invalidUDP.Load(),
		BadHandshake:    t.ctr.badHandshake.Load(),
		TUNWriteErrors:  t.ctr.tunWriteErrors.Load(),
		UDPReadErrors:   t.ctr.udpReadErrors.Load(),
		HandshakeErrors: t.ctr.handshakeErrors.Load(),
		CookieReplies:   t.ctr.cookieReplies.Load(),
		RateLimited:     t.ctr.rateLimited.Load(),

		HandshakeQueueFull: t.ctr.handshakeQueueFull.Load(),
	}
}

// Run moves packets until ctx ends or the TUN device or socket fails. It
// closes both before it returns.
func (t *Tunnel) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 1+len(t.recv))
	stage := func(f func(context.Context) error) {
		wg.Go(func() { errs <- f(ctx); cancel() })
	}
	stage(t.readTUN)
	for _, fn := range t.recv {
		stage(func(ctx context.Context) error { return t.readUDP(ctx, fn) })
	}
	wg.Go(func() { t.handshakes(ctx) })
	wg.Go(func() { t.timers(ctx) })
	<-ctx.Done()
	t.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Close closes the TUN device and the sockets, which ends Run. It is for
// a Tunnel whose Run never started; calling it more than once is harmless.
func (t *Tunnel) Close() error {
	t.closeOnce.Do(func() {
		t.limiter.Close()
		t.nudges.Close()
		t.closeErr = errors.Join(t.cfg.TUN.Close(), t.bind.Close())
	})
	return t.closeErr
}

// allocSPI picks a random unused inbound SPI ≥ handshake.MinSPI and
// reserves it; the keypair that will own it is set when it exists.
func (t *Tunnel) allocSPI() (uint32, error) {
	var b [4]byte
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		spi := binary.BigEndian.Uint32(b[:])
		if spi < handshake.MinSPI {
			continue
		}
		if _, used := t.bySPI[spi]; used {
			continue
		}
		t.bySPI[spi] = nil
		return spi, nil
	}
}

func (t *Tunnel) freeSPI(spi uint32) {
	t.mu.Lock()
	delete(t.bySPI, spi)
	t.mu.Unlock()
}

func (t *Tunnel) freeKeypair(kp *keypair) {
	if kp != nil {
		t.freeSPI(kp.recv.SPI())
	}
}

// newKeypair makes p's keypair from a finished handshake and makes its
// inbound SPI (reserved by allocSPI) find it.
func (t *Tunnel) newKeypair(p *peer, res handshake.Result, initiator bool, now time.Time) (*keypair, error) {
	suite := esp.Suite(res.Suite) // same numbering: 1 AES-256-GCM, 2 ChaCha20-Poly1305
	send, err := esp.NewSA(esp.Config{SPI: res.Send.SPI, Suite: suite, Keymat: res.Send.KeyMat[:]})
	if err != nil {
		return nil, err
	}
	recv, err := esp.NewSA(esp.Config{SPI: res.Recv.SPI, Suite: suite, Keymat: res.Recv.KeyMat[:]})
	if err != nil {
		return nil, err
	}
	if t.cfg.KeyLog != nil {
		// Outer addresses are "*": the SAs outlive them (RFC 6281 §7.3).
		line := send.AppendKeyLog(nil, netip.Addr{}, netip.Addr{})
		line = recv.AppendKeyLog(line, netip.Addr{}, netip.Addr{})
		if _, err := t.cfg.KeyLog.Write(line); err != nil {
			t.logf("tunnel: key log: %v", err)
		}
	}
	kp := &keypair{peer: p, send: send, recv: recv, created: now, initiator: initiator}
	kp.confirmed.Store(initiator)
	t.mu.Lock()
	t.bySPI[recv.SPI()] = kp
	t.mu.Unlock()
	return kp, nil
}

// sendAll sends one datagram to p's endpoint and along every other path
// to p. Callers hold p.mu.
func (t *Tunnel) sendAll(p *peer, b []byte, now time.Time) {
	if p.endpoint.Load() != nil {
		t.send(p, [][]byte{b}, now)
	}
	t.sendOthers(p, b)
}

// sendOthers sends one datagram along every path to p but the endpoint's.
// Callers hold p.mu.
func (t *Tunnel) sendOthers(p *peer, b []byte) {
	cur := p.endpointAddr()
	for i := range p.paths {
		if e := &p.paths[i]; e.addr != cur {
			if err := t.bind.Send([][]byte{b}, e.ep); err != nil {
				p.sendErrors.Add(1)
			}
		}
	}
}

// send writes datagrams to p's endpoint in one batch and reports whether
// they went out.
func (t *Tunnel) send(p *peer, bufs [][]byte, now time.Time) bool {
	e := p.endpoint.Load()
	if e == nil || len(bufs) == 0 {
		return false
	}
	if err := t.bind.Send(bufs, e.ep); err != nil {
		p.sendErrors.Add(1)
		if !errors.Is(err, net.ErrClosed) {
			t.logf("tunnel: send to %v: %v", e.addr, err)
		}
		return false
	}
	p.lastSent.Store(now.UnixNano())
	return true
}
