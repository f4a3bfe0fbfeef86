// Package tunnel is the per-peer data path of a Back to My Mac tunnel
// (RFC 6281 §2, §7.3): it reads inner IPv6 packets from the TUN device, seals
// them into ESP-in-UDP (packages esp, replay) for the peer that owns the
// destination ULA, runs the Noise handshake (package handshake) to get the SAs,
// and opens inbound ESP back into the TUN device.
//
// # Goroutines and locking
//
// Run starts three goroutines: the TUN reader (outbound), the UDP reader
// (inbound and handshake messages) and a timer (retransmission, expiry,
// keepalives). State lives in two places:
//
//   - Tunnel.mu guards the maps: peers by ULA, peers by inbound SPI, peers
//     by pending initiation index.
//   - peer.mu guards everything about one peer, including its SAs. An esp.SA
//     is not safe for concurrent use, so every Seal and Open runs under its
//     peer's lock: that lock is the "one sequential stage" that owns the SA.
//
// Lock order: peer.mu may be held while taking Tunnel.mu, never the reverse.
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
package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

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
	// Conn is the mapped tunnel port; Run closes it when it returns.
	Conn *net.UDPConn
	// Static is this host's key pair, PSK the account-derived key.
	Static handshake.KeyPair
	PSK    [32]byte
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
}

// Peer is one of the user's other hosts, as the watcher sees it.
type Peer struct {
	ULA      netip.Addr
	Endpoint netip.AddrPort
	Static   [32]byte
}

// PeerStatus is a snapshot of one peer's state and counters.
type PeerStatus struct {
	ULA      netip.Addr
	Endpoint netip.AddrPort
	Static   [32]byte
	// HasSA reports a confirmed SA pair; SAAge is its age and
	// LastHandshake when it was made.
	HasSA         bool
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
	// HandshakeFailures: responses that did not authenticate (e.g. another
	// PSK) or did not match the peer. HandshakeTimeouts: handshakes given up
	// after MaxInitiationAttempts.
	HandshakeFailures uint64
	HandshakeTimeouts uint64
	// SendErrors: UDP writes that failed. Roams: endpoint changes learnt
	// from authentic packets.
	SendErrors uint64
	Roams      uint64
}

// Counters are the tunnel-wide drops that belong to no peer.
type Counters struct {
	UnknownSPI      uint64 // ESP for an SPI we have no SA for
	UnknownDest     uint64 // TUN packets to no peer's ULA
	NotIPv6         uint64 // TUN packets that are not IPv6
	InvalidUDP      uint64 // UDP payloads Classify rejects
	BadHandshake    uint64 // handshake messages refused before a peer was known
	TUNWriteErrors  uint64
	UDPReadErrors   uint64
	HandshakeErrors uint64 // local failures (randomness, ...)
}

// Tunnel is the data path for all peers of this host.
type Tunnel struct {
	cfg  Config
	hcfg handshake.Config
	resp *handshake.Responder
	logf func(string, ...any)

	mu      sync.RWMutex
	peers   map[netip.Addr]*peer
	bySPI   map[uint32]*peer // inbound SPI → peer; nil value: reserved
	byIndex map[uint32]*peer // pending initiation index → peer

	ctr struct {
		unknownSPI, unknownDest, notIPv6, invalidUDP, badHandshake atomic.Uint64
		tunWriteErrors, udpReadErrors, handshakeErrors             atomic.Uint64
	}
}

// keypair is the two SAs one handshake made.
type keypair struct {
	send, recv *esp.SA
	created    time.Time
	initiator  bool
	sent       uint64
}

type peer struct {
	ula    netip.Addr
	static [32]byte

	mu       sync.Mutex
	removed  bool
	endpoint netip.AddrPort

	cur, prev, next *keypair
	prevExpire      time.Time

	staged [][]byte // each: esp.HeaderLen headroom, packet, trailer room

	hs        *handshake.Initiation
	hsSPI     uint32
	hsSent    time.Time
	hsTries   int
	lastHS    time.Time
	lastSent  time.Time
	stat      PeerStatus // counters only
	sendBatch [1][]byte
}

// New makes a Tunnel. It panics on a Config the handshake refuses (a
// programming error: bad keys).
func New(cfg Config) *Tunnel {
	t := &Tunnel{
		cfg:     cfg,
		hcfg:    handshake.Config{Static: cfg.Static, PSK: cfg.PSK},
		logf:    cfg.Logf,
		peers:   make(map[netip.Addr]*peer),
		bySPI:   make(map[uint32]*peer),
		byIndex: make(map[uint32]*peer),
	}
	if t.logf == nil {
		t.logf = func(string, ...any) {}
	}
	r, err := handshake.NewResponder(t.hcfg, t.allow)
	if err != nil {
		panic("tunnel: " + err.Error())
	}
	t.resp = r
	return t
}

// allow admits an initiator only if it is a known peer and Config.Allow agrees.
func (t *Tunnel) allow(k [32]byte) bool {
	if t.cfg.Allow != nil && !t.cfg.Allow(k) {
		return false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, p := range t.peers {
		if p.static == k {
			return true
		}
	}
	return false
}

// SetPeer adds a peer or updates it. A new endpoint only changes where
// packets go; the SAs stay (roaming). A new static key drops the SAs.
func (t *Tunnel) SetPeer(pc Peer) {
	ep := netip.AddrPortFrom(pc.Endpoint.Addr().Unmap(), pc.Endpoint.Port())
	t.mu.Lock()
	p := t.peers[pc.ULA]
	if p == nil {
		p = &peer{ula: pc.ULA, static: pc.Static, endpoint: ep}
		t.peers[pc.ULA] = p
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()

	p.mu.Lock()
	defer p.mu.Unlock()
	p.endpoint = ep
	if p.static != pc.Static {
		p.static = pc.Static
		t.resetLocked(p)
	}
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
	p.removed = true
	t.resetLocked(p)
	t.resp.Forget(p.static)
}

// resetLocked drops all SAs, the pending handshake and the staged packets.
func (t *Tunnel) resetLocked(p *peer) {
	t.mu.Lock()
	for spi, q := range t.bySPI {
		if q == p {
			delete(t.bySPI, spi)
		}
	}
	for idx, q := range t.byIndex {
		if q == p {
			delete(t.byIndex, idx)
		}
	}
	t.mu.Unlock()
	p.cur, p.prev, p.next, p.hs = nil, nil, nil, nil
	p.stat.StagedDropped += uint64(len(p.staged))
	clear(p.staged)
	p.staged = p.staged[:0]
}

// Status returns a snapshot of every peer.
func (t *Tunnel) Status() []PeerStatus {
	t.mu.RLock()
	ps := make([]*peer, 0, len(t.peers))
	for _, p := range t.peers {
		ps = append(ps, p)
	}
	t.mu.RUnlock()
	now := time.Now()
	out := make([]PeerStatus, 0, len(ps))
	for _, p := range ps {
		p.mu.Lock()
		s := p.stat
		s.ULA, s.Endpoint, s.Static = p.ula, p.endpoint, p.static
		s.HasSA = p.cur != nil
		if p.cur != nil {
			s.SAAge = now.Sub(p.cur.created)
		}
		s.LastHandshake = p.lastHS
		s.HandshakePending = p.hs != nil
		s.Staged = len(p.staged)
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
	}
}

// Run moves packets until ctx ends or the TUN device or socket fails. It
// closes both before it returns.
func (t *Tunnel) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(3)
	go func() { defer wg.Done(); errs <- t.readTUN(ctx); cancel() }()
	go func() { defer wg.Done(); errs <- t.readUDP(ctx); cancel() }()
	go func() { defer wg.Done(); t.timers(ctx) }()
	<-ctx.Done()
	t.cfg.TUN.Close()
	t.cfg.Conn.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// allocSPI picks a random unused inbound SPI ≥ handshake.MinSPI and
// reserves it for p (nil: reserved, owner not yet known).
func (t *Tunnel) allocSPI(p *peer) (uint32, error) {
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
		t.bySPI[spi] = p
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

func (t *Tunnel) newKeypair(res handshake.Result, initiator bool, now time.Time) (*keypair, error) {
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
	return &keypair{send: send, recv: recv, created: now, initiator: initiator}, nil
}

// sendLocked writes one datagram to the peer's endpoint. p.mu is held.
func (t *Tunnel) sendLocked(p *peer, b []byte, now time.Time) bool {
	if !p.endpoint.IsValid() {
		return false
	}
	if _, err := t.cfg.Conn.WriteToUDPAddrPort(b, p.endpoint); err != nil {
		p.stat.SendErrors++
		if !errors.Is(err, net.ErrClosed) {
			t.logf("tunnel: send to %v: %v", p.endpoint, err)
		}
		return false
	}
	p.lastSent = now
	return true
}
