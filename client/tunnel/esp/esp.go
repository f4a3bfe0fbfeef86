// Package esp is the ESP packet codec (RFC 4303) of the Back to My Mac tunnel:
// tunnel mode, inner IPv6 (Next Header 41), AEAD only, carried in UDP
// (RFC 3948).
//
// Two AEAD suites are supported, both with a 16-octet ICV, an 8-octet IV in
// the packet, a 4-octet salt from the key material, and nonce = salt ‖ IV:
// AES-256-GCM (RFC 4106) and ChaCha20-Poly1305 (RFC 7634). There is no
// cipher negotiation here; the handshake picks the suite and derives one key
// per direction.
//
// The packet on the wire (after the UDP header) is
//
//	SPI(4) | Seq low 32(4) | IV(8) | [ inner packet | pad 1,2,3.. | padlen | NH ]enc | ICV(16)
//
// The AAD is SPI ‖ Seq (8 octets) or, for an ESN SA, SPI ‖ Seq high 32 ‖
// Seq low 32 (12 octets): the high half is authenticated but never sent
// (RFC 4106 §5, RFC 7634 §2.1). The IV is the 64-bit sequence number, which
// is unique per packet under one key (RFC 4106 §3.1, RFC 7634 §2), so no
// random source is needed on the hot path.
//
// The data path follows wireguard-go's habits: the caller reads inner packets
// from the TUN device at an offset of [HeaderLen] so that [SA.Seal] writes the
// ESP header in front of them and the trailer and ICV behind them, in place,
// and [SA.Open] decrypts in place. Neither allocates when the buffers have
// room. A packet that fails is reported by a [Drop] value, meant to be counted
// (see [DropCounts]) and skipped with continue, never propagated.
//
// An SA is one direction of one tunnel. It owns its sequence counter
// (outbound) or anti-replay window (inbound) from package replay and some
// scratch space, so it is unsafe for concurrent use: give it to the one
// sequential stage that owns the SA, as wireguard-go's per-peer receiver owns
// its replay filter.
//
// For debugging, [SA.AppendKeyLog] renders an SA as a line of Wireshark's
// esp_sa table, so that Wireshark or tshark can decrypt captured packets
// independently of this package (btmm-client run --esp-keylog FILE; see
// keylog.go for the format and what was verified against which Wireshark).
package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/openbtmm/btmm/client/tunnel/replay"
)

// Sizes of the ESP fields (RFC 4303 §2) for the AEAD suites of this package.
const (
	// SPILen and SeqLen are the two fixed header fields.
	SPILen = 4
	SeqLen = 4
	// IVLen is the explicit per-packet IV of both suites (RFC 4106 §3.1,
	// RFC 7634 §2).
	IVLen = 8
	// HeaderLen is what precedes the encrypted payload: SPI, Seq, IV. It is
	// the headroom to leave in front of an inner packet for an in-place
	// [SA.Seal] (the wireguard-go "offset").
	HeaderLen = SPILen + SeqLen + IVLen
	// ICVLen is the AEAD tag. RFC 4106 also allows 8 and 12 octets; we
	// only use 16, the one every implementation must support (§6).
	ICVLen = 16
	// SaltLen is the implicit nonce prefix taken from the key material.
	SaltLen = 4
	// KeyLen is the cipher key of both suites (AES-256, ChaCha20).
	KeyLen = 32
	// KeymatLen is the key material an SA takes: key ‖ salt (RFC 4106
	// §8.1, RFC 7634 §2): 36 octets for both suites.
	KeymatLen = KeyLen + SaltLen

	// MaxPad is the most padding [SA.Seal] adds: just enough to bring
	// Pad Length and Next Header to a 4-octet boundary (RFC 4303 §2.4;
	// neither AEAD has a block size to fill).
	MaxPad = 3
	// TrailerLen is Pad Length + Next Header.
	TrailerLen = 2
	// Overhead is the most a sealed packet adds to the inner packet, for
	// MTU math: the TUN MTU must be at most the path MTU minus the outer
	// IPv4 (20) and UDP (8) headers minus Overhead.
	Overhead = HeaderLen + MaxPad + TrailerLen + ICVLen
	// MinLen is the shortest ESP packet Open can accept: an empty payload
	// padded to 4 octets, and the ICV.
	MinLen = HeaderLen + 4 + ICVLen
)

// IP protocol numbers carried in the Next Header field (RFC 4303 §2.6).
const (
	NextHeaderIPv4    = 4  // IPv4-in-ESP, tunnel mode
	NextHeaderIPv6    = 41 // IPv6-in-ESP, tunnel mode: what BTMM carries
	NextHeaderNoNext  = 59 // a dummy packet (§2.6): discard silently
	nonceLen          = SaltLen + IVLen
	aadLenESN         = SPILen + 4 + SeqLen
	aadLen32          = SPILen + SeqLen
	reservedSPIsBelow = 256 // SPI 0 is local, 1..255 are reserved by IANA (§2.1)
)

// Suite is an ESP AEAD transform.
type Suite uint8

const (
	// AES256GCM is AES-GCM with a 256-bit key and a 16-octet ICV
	// (RFC 4106; IKEv2 ENCR_AES_GCM_16, transform 20, key length 256).
	AES256GCM Suite = iota + 1
	// ChaCha20Poly1305 is AEAD_CHACHA20_POLY1305 in ESP (RFC 7634; IKEv2
	// ENCR_CHACHA20_POLY1305, transform 28).
	ChaCha20Poly1305
)

// String returns a short name for logs.
func (s Suite) String() string {
	switch s {
	case AES256GCM:
		return "aes256-gcm16"
	case ChaCha20Poly1305:
		return "chacha20-poly1305"
	}
	return fmt.Sprintf("Suite(%d)", uint8(s))
}

// newAEAD builds the cipher for s from a KeyLen-octet key.
func (s Suite) newAEAD(key []byte) (cipher.AEAD, error) {
	switch s {
	case AES256GCM:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b) // 12-octet nonce, 16-octet tag: exactly RFC 4106's
	case ChaCha20Poly1305:
		return chacha20poly1305.New(key)
	}
	return nil, fmt.Errorf("esp: unknown suite %d", uint8(s))
}

// Config describes one SA, as the handshake negotiated it.
type Config struct {
	// SPI identifies the SA in every packet. The receiver of the SA's
	// packets chooses it (RFC 4303 §2.1). 0..255 are refused: 0 is
	// reserved and doubles as RFC 3948's non-ESP marker, 1..255 are
	// reserved by IANA.
	SPI uint32
	// Suite is the AEAD transform.
	Suite Suite
	// Keymat is key ‖ salt, KeymatLen octets, fresh from the handshake for
	// this SA and direction. A key must never be reused with a new SA, or
	// IVs (sequence numbers, restarting at 1) would repeat (RFC 4106 §2).
	Keymat []byte
	// NoESN selects 32-bit sequence numbers. The zero value, extended
	// (64-bit) sequence numbers, is what BTMM uses; NoESN exists for
	// interoperability and the RFC 7634 test vector.
	NoESN bool
}

// SA is one direction of an ESP security association: the outbound side
// uses Seal, the inbound side Open. Do not use one SA for both, since that
// would share the key (and so the nonce space) between the two peers.
//
// An SA is unsafe for concurrent use (see the package doc).
type SA struct {
	spi   uint32
	suite Suite
	esn   bool
	aead  cipher.AEAD

	// ctr is the outbound sequence counter, win the inbound replay window;
	// each side touches only its own.
	ctr replay.Counter
	win replay.Window

	// Scratch for the nonce (salt fixed in the first 4 octets) and the AAD.
	// They live in the SA rather than on the stack because slices passed to
	// an interface method (cipher.AEAD) escape, and a stack array would be
	// moved to the heap on every packet.
	nonce [nonceLen]byte
	aad   [aadLenESN]byte

	// keymat is kept only for [SA.AppendKeyLog]; the AEAD holds the key
	// (expanded) anyway.
	keymat [KeymatLen]byte
}

// NewSA builds an SA from its negotiated parameters. It copies c.Keymat.
func NewSA(c Config) (*SA, error) {
	if c.SPI < reservedSPIsBelow {
		return nil, fmt.Errorf("esp: SPI %d is reserved (RFC 4303 §2.1)", c.SPI)
	}
	if len(c.Keymat) != KeymatLen {
		return nil, fmt.Errorf("esp: %v needs %d octets of key material (key ‖ salt), got %d", c.Suite, KeymatLen, len(c.Keymat))
	}
	aead, err := c.Suite.newAEAD(c.Keymat[:KeyLen])
	if err != nil {
		return nil, err
	}
	if aead.NonceSize() != nonceLen || aead.Overhead() != ICVLen {
		// Cannot happen with the two suites above; guards the constants.
		return nil, fmt.Errorf("esp: %v: unexpected nonce %d / tag %d", c.Suite, aead.NonceSize(), aead.Overhead())
	}
	sa := &SA{spi: c.SPI, suite: c.Suite, esn: !c.NoESN, aead: aead}
	copy(sa.keymat[:], c.Keymat)
	copy(sa.nonce[:SaltLen], c.Keymat[KeyLen:]) // nonce = salt ‖ IV (RFC 4106 §4), never IV ‖ salt
	return sa, nil
}

// SPI returns the SA's SPI.
func (sa *SA) SPI() uint32 { return sa.spi }

// Suite returns the SA's AEAD transform.
func (sa *SA) Suite() Suite { return sa.suite }

// ESN reports whether the SA uses 64-bit extended sequence numbers.
func (sa *SA) ESN() bool { return sa.esn }

// ErrExhausted is returned by Seal when the SA has used up its sequence
// numbers (2^64-1 with ESN, 2^32-1 without). The counter must never wrap
// with anti-replay on (RFC 4303 §3.3.3): the caller must rekey, and should
// log it as an auditable event. Rekeying by time or packet count keeps this
// from ever happening in practice.
var ErrExhausted = errors.New("esp: sequence numbers exhausted, SA must be rekeyed")

// SealedLen returns the length of the ESP packet that Seal makes from an
// inner packet of n octets.
func SealedLen(n int) int {
	return HeaderLen + n + padLen(n) + TrailerLen + ICVLen
}

// padLen is the padding for an n-octet payload: the fewest octets that bring
// payload ‖ pad ‖ padlen ‖ NH to a multiple of 4 (HeaderLen is itself a
// multiple of 4, so this right-aligns the trailer as RFC 4303 §2.4 asks).
func padLen(n int) int {
	return -(n + TrailerLen) & 3
}

// Seal encrypts the inner IPv6 packet into an ESP packet, appends it to dst,
// and returns the extended slice, as cipher.AEAD.Seal does. It takes the next
// outbound sequence number, which is also the IV.
//
// For zero copies and zero allocations, put inner at dst[len(dst)+HeaderLen:]
// in a buffer with capacity for SealedLen(len(inner)) more octets, typically
//
//	n, _ := tun.Read(buf[esp.HeaderLen:])  // buf has room for the trailer
//	pkt, err := sa.Seal(buf[:0], buf[esp.HeaderLen:esp.HeaderLen+n])
//
// Otherwise inner is copied into place (it may overlap dst in any way), and
// dst grows if it lacks capacity.
//
// The only error is ErrExhausted; dst is then returned unchanged.
func (sa *SA) Seal(dst, inner []byte) ([]byte, error) {
	seq, ok := sa.ctr.Next()
	if !ok || (!sa.esn && seq > math.MaxUint32) {
		return dst, ErrExhausted
	}
	return sa.seal(dst, inner, seq, seq, NextHeaderIPv6), nil
}

// SealDummy appends a dummy packet (Next Header 59, no payload; RFC 4303
// §2.6) to dst, as Seal does. The receiver authenticates it and discards
// it silently (Open returns ErrDummy), which is what makes it useful: it
// proves who sent it from where, and carries nothing.
func (sa *SA) SealDummy(dst []byte) ([]byte, error) {
	seq, ok := sa.ctr.Next()
	if !ok || (!sa.esn && seq > math.MaxUint32) {
		return dst, ErrExhausted
	}
	return sa.seal(dst, nil, seq, seq, NextHeaderNoNext), nil
}

// seal builds the packet with an explicit IV and Next Header; Seal always
// uses iv = seq and NH 41. Tests use it to reproduce RFC 7634's vector.
func (sa *SA) seal(dst, inner []byte, seq, iv uint64, nh byte) []byte {
	n := len(inner)
	pad := padLen(n)
	ptLen := n + pad + TrailerLen
	ret, out := sliceForAppend(dst, HeaderLen+ptLen+ICVLen)

	// Move the payload into place first: the header writes below may land
	// on octets of inner if the caller gave no headroom.
	if n > 0 && &out[HeaderLen] != &inner[0] {
		copy(out[HeaderLen:], inner)
	}
	binary.BigEndian.PutUint32(out[0:], sa.spi)
	binary.BigEndian.PutUint32(out[4:], uint32(seq))
	binary.BigEndian.PutUint64(out[8:], iv)
	t := out[HeaderLen+n : HeaderLen+ptLen]
	for i := range pad {
		t[i] = byte(i + 1) // RFC 4303 §2.4 default padding: 1, 2, 3, ...
	}
	t[pad] = byte(pad)
	t[pad+1] = nh

	copy(sa.nonce[SaltLen:], out[8:HeaderLen])
	// dst = out[:HeaderLen] makes the ciphertext overwrite the plaintext
	// exactly, the in-place case cipher.AEAD allows.
	sa.aead.Seal(out[:HeaderLen], sa.nonce[:], out[HeaderLen:HeaderLen+ptLen], sa.buildAAD(seq))
	return ret
}

// buildAAD fills the AAD scratch for seq: SPI ‖ seq as 64 bits big-endian
// for ESN (RFC 4106 §5, RFC 7634 §2.1), SPI ‖ seq as 32 bits otherwise.
func (sa *SA) buildAAD(seq uint64) []byte {
	binary.BigEndian.PutUint32(sa.aad[0:], sa.spi)
	if sa.esn {
		binary.BigEndian.PutUint64(sa.aad[4:], seq)
		return sa.aad[:aadLenESN]
	}
	binary.BigEndian.PutUint32(sa.aad[4:], uint32(seq))
	return sa.aad[:aadLen32]
}

// Open authenticates and decrypts one ESP packet (after the UDP header and
// the [Classify] demultiplexing), appends the inner packet to dst, and
// returns the extended slice and the Next Header: NextHeaderIPv6, or
// NextHeaderIPv4 (BTMM never sends it, but the caller decides; it must check
// the inner source address against the SA's peer anyway).
//
// For zero copies and zero allocations, decrypt in place with
//
//	inner, nh, err := sa.Open(pkt[esp.HeaderLen:esp.HeaderLen], pkt)
//
// dst's free capacity must otherwise not overlap packet (cipher.AEAD panics
// on inexact overlap). In place, packet's contents are destroyed whether or
// not Open succeeds.
//
// The steps follow RFC 4303 §3.4: a read-only replay check on the clear
// sequence number (which also infers the ESN high half), then the AEAD, and
// only if that verifies, the window update; then the trailer. Every failure
// is a [Drop]: count it and move on to the next packet.
func (sa *SA) Open(dst, packet []byte) (inner []byte, nextHeader byte, err error) {
	if len(packet) < MinLen || (len(packet)-HeaderLen-ICVLen)%4 != 0 {
		// The sender must right-align the trailer on 4 octets (§2.4), so
		// the ciphertext length is a multiple of 4. Checking it here
		// rejects junk before spending a decryption on it.
		return dst, 0, ErrMalformed
	}
	if binary.BigEndian.Uint32(packet) != sa.spi {
		return dst, 0, ErrSPI
	}
	seq, ok := sa.win.Check(binary.BigEndian.Uint32(packet[4:]))
	if !ok || (!sa.esn && seq > math.MaxUint32) {
		// Without ESN, a high half other than 0 is what the window infers
		// for a number below it: too old.
		return dst, 0, ErrReplay
	}
	copy(sa.nonce[SaltLen:], packet[8:HeaderLen])
	ret, err := sa.aead.Open(dst, sa.nonce[:], packet[HeaderLen:], sa.buildAAD(seq))
	if err != nil {
		return dst, 0, ErrAuth
	}
	if !sa.win.Accept(seq) {
		return dst, 0, ErrReplay // a copy got in between Check and Accept
	}

	// The packet is authentic from here on; a bad trailer is a peer bug.
	pt := ret[len(dst):]
	nh := pt[len(pt)-1]
	pad := int(pt[len(pt)-2])
	n := len(pt) - TrailerLen - pad
	if n < 0 {
		return dst, 0, ErrPadding
	}
	for i, b := range pt[n : n+pad] {
		// §2.4: the receiver SHOULD check the default 1, 2, 3, ...
		// Any length up to 255 is accepted (a peer may pad for TFC).
		if b != byte(i+1) {
			return dst, 0, ErrPadding
		}
	}
	switch nh {
	case NextHeaderIPv6, NextHeaderIPv4:
		return ret[:len(dst)+n], nh, nil
	case NextHeaderNoNext:
		return dst, 0, ErrDummy // §2.6: MUST be discarded silently
	}
	return dst, 0, ErrNextHeader
}

// sliceForAppend extends in by n octets, reusing its capacity if it can
// (the same helper the standard library's AEADs use). head is the whole
// result, tail the n new octets.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	tail = head[len(in):]
	return
}
