package tunnel

import "time"

// Protocol constants, named after the spec they come from (RFC 4303,
// RFC 3948, RFC 4106) or after WireGuard's constants.go where BTMM borrows
// WireGuard's timer design.
const (
	// RekeyAfterPackets starts a new handshake once an outbound SA has
	// sealed this many packets. ESN SAs must not wrap their 64-bit counter
	// (RFC 4303 §2.2, §3.3.3: rekey well before the limit) and AES-GCM must stay well below 2^64 blocks per key
	// (RFC 4106 §10): 2^60 leaves a factor of 16 on both.
	RekeyAfterPackets = 1 << 60

	// RekeyAfterTime: the side that initiated the current SA pair
	// rekeys when it sends on a pair this old. Two minutes, as
	// WireGuard's RekeyAfterTime: a handshake costs four X25519 operations
	// and one round trip, so frequent rekeys are cheap, and they bound how
	// much traffic a stolen SA key exposes (forward secrecy in minutes, not
	// hours). An hour (IKEv2-style) would save nothing that matters.
	RekeyAfterTime = 2 * time.Minute
	// RekeyAfterTimeResponder: the responding side rekeys later, so the
	// two ends do not both initiate at the same moment.
	RekeyAfterTimeResponder = RekeyAfterTime + RekeyTimeout*2
	// RejectAfterTime: an SA pair this old is never used again, whatever
	// happened to the rekey; packets are staged until a new handshake.
	RejectAfterTime = 3 * time.Minute

	// RekeyTimeout is how long an initiation waits for its response
	// before it is retransmitted (as a fresh initiation, Initiation.Retry).
	RekeyTimeout = 5 * time.Second
	// MaxInitiationAttempts bounds the retransmissions of one handshake;
	// after that the staged packets are dropped and a failure is counted.
	MaxInitiationAttempts = 6

	// OldSAGrace is how long the previous inbound SA still decrypts after
	// a rekey, for packets the peer sent before it switched: without it
	// they would be lost on every rekey.
	OldSAGrace = 30 * time.Second
	// UnconfirmedSATimeout: a responder-side SA pair that no ESP packet
	// has confirmed (the initiator may not know the PSK) is forgotten
	// after this long.
	UnconfirmedSATimeout = RekeyTimeout * MaxInitiationAttempts

	// UnderLoadInitiations: more initiations than this within a second
	// put the responder under load (cookies and a rate per source, as in
	// WireGuard) for UnderLoadAfterTime. A user's hosts send a few an
	// hour each; a handshake costs the responder four X25519 operations.
	UnderLoadInitiations = 50
	UnderLoadAfterTime   = time.Second

	// KeepaliveInterval: a peer we have sent nothing to for this long gets
	// a one-octet NAT keepalive (RFC 3948 §4: 20 s).
	KeepaliveInterval = 20 * time.Second

	// KeepaliveTimeout: a peer that sent us data and got nothing
	// authentic back for this long gets an authenticated dummy packet
	// (RFC 4303 §2.6), so that a one-way stream is not taken for a dead
	// path at its sender (WireGuard's KeepaliveTimeout).
	KeepaliveTimeout = 10 * time.Second
	// NewHandshakeAfter: data went out and nothing authentic came back
	// for this long, so the path may be dead: a new handshake goes along
	// every path, and the first to answer carries on (WireGuard's
	// KeepaliveTimeout + RekeyTimeout).
	NewHandshakeAfter = KeepaliveTimeout + RekeyTimeout

	// MaxStagedPackets bounds the packets held per peer while a handshake
	// runs; when full the oldest is dropped (WireGuard's QueueStagedSize).
	MaxStagedPackets = 128

	// timerTick is the resolution of retransmission, expiry and keepalive.
	timerTick = time.Second

	// maxUDPPacket is the receive buffer: the largest UDP payload.
	maxUDPPacket = 65535
)

// workQueueLen bounds the handshake messages and asks waiting for the
// worker; beyond it they are dropped and counted (HandshakeQueueFull), as
// wireguard-go bounds its handshake queue. A user's hosts send a few
// handshakes an hour; only a flood fills it.
const workQueueLen = 1024
