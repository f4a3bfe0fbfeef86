package handshake

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/sys/cpu"
)

// Message types, the first octet after the non-ESP marker.
const (
	TypeInitiation  = 1
	TypeResponse    = 2
	TypeCookieReply = 3
)

// NonESPMarker is what precedes every handshake message in a UDP datagram
// (RFC 3948 §2.2). The transport adds and strips it; this package does not.
var NonESPMarker = [4]byte{0, 0, 0, 0}

// Suite identifies an ESP cipher suite. Both take a 36-octet KEYMAT.
type Suite uint8

const (
	// SuiteAES256GCM is AES-256-GCM with a 16-octet ICV (RFC 4106).
	SuiteAES256GCM Suite = 1
	// SuiteChaCha20Poly1305 is ChaCha20-Poly1305 (RFC 7634).
	SuiteChaCha20Poly1305 Suite = 2
)

// DefaultSuites is the preference order used when Config.Suites is empty:
// AES-256-GCM first on a CPU with AES and carry-less multiply instructions
// (every current Mac and PC: then it is the faster suite, 2.0 against
// 1.3 GB/s on one core here, and constant time), ChaCha20-Poly1305 first
// elsewhere, where AES in software is slow and leaks timing. Both ends
// accept either: the responder picks from its own list what was offered.
var DefaultSuites = defaultSuites(hasAESGCMHardware())

func defaultSuites(aesHardware bool) []Suite {
	if aesHardware {
		return []Suite{SuiteAES256GCM, SuiteChaCha20Poly1305}
	}
	return []Suite{SuiteChaCha20Poly1305, SuiteAES256GCM}
}

// hasAESGCMHardware reports what Go's crypto/aes uses for GCM: AES-NI with
// PCLMULQDQ on amd64, the AES and PMULL extensions on arm64, the message
// security assist on s390x.
func hasAESGCMHardware() bool {
	switch runtime.GOARCH {
	case "amd64":
		return cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ
	case "arm64":
		return cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
	case "s390x":
		return cpu.S390X.HasAES && cpu.S390X.HasAESGCM
	}
	return false
}

func (s Suite) String() string {
	switch s {
	case SuiteAES256GCM:
		return "AES-256-GCM"
	case SuiteChaCha20Poly1305:
		return "ChaCha20-Poly1305"
	}
	return fmt.Sprintf("Suite(%d)", uint8(s))
}

// ParseSuites reads a preference list such as "ChaCha20-Poly1305,
// AES-256-GCM": suite names as String gives them, in any case, separated
// by commas. The empty string gives nil: DefaultSuites.
func ParseSuites(list string) ([]Suite, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var out []Suite
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		var found Suite
		for _, s := range []Suite{SuiteAES256GCM, SuiteChaCha20Poly1305} {
			if strings.EqualFold(name, s.String()) {
				found = s
			}
		}
		switch {
		case found == 0:
			return nil, fmt.Errorf("unknown ESP suite %q (known: %v, %v)", name, SuiteAES256GCM, SuiteChaCha20Poly1305)
		case slices.Contains(out, found):
			return nil, fmt.Errorf("ESP suite %v twice", found)
		}
		out = append(out, found)
	}
	return out, nil
}

func (s Suite) known() bool { return s == SuiteAES256GCM || s == SuiteChaCha20Poly1305 }

// MinSPI is the smallest SPI a side may choose to receive on: 0 is reserved
// (and is the non-ESP marker), 1–255 are reserved by IANA (RFC 4303 §2.1).
const MinSPI = 256

// maxSuites bounds the offer list so message 1 has a small, bounded size.
const maxSuites = 8

// Errors. Every failure wraps one of these; none of them leaves keys behind.
var (
	// ErrAuth: a MAC, AEAD tag or DH check failed: wrong PSK (another
	// user's host), wrong static key, or a tampered message.
	ErrAuth = errors.New("handshake: authentication failed")
	// ErrMalformed: wrong length, type or field value.
	ErrMalformed = errors.New("handshake: malformed message")
	// ErrReplay: the initiation's timestamp is not newer than the last one
	// accepted from the same initiator.
	ErrReplay = errors.New("handshake: replayed or stale initiation")
	// ErrNotAllowed: the initiator's static key is not one the caller allows.
	ErrNotAllowed = errors.New("handshake: peer static key not allowed")
	// ErrNoSuite: the two ends share no cipher suite.
	ErrNoSuite = errors.New("handshake: no common cipher suite")
	// ErrCookieRequired: the responder is under load and the initiation has
	// no valid mac2; send the returned cookie reply instead of a response.
	ErrCookieRequired = errors.New("handshake: cookie required")
	// ErrUsed: Finish was already called on this Initiation.
	ErrUsed = errors.New("handshake: initiation already finished")
)

// protocol is Noise_IKpsk2_25519_ChaChaPoly_SHA256 (see the package doc).
var cipherSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashSHA256)

// ProtocolName is the full Noise protocol name, for logs and documentation.
const ProtocolName = "Noise_IKpsk2_25519_ChaChaPoly_SHA256"

const prologueLabel = "BTMM handshake v1"

const (
	headerLen     = 1 + 4     // type ‖ sender index
	replyHdrLen   = 1 + 4 + 4 // type ‖ sender index ‖ receiver index
	macLen        = 16
	tai64nLen     = 12
	ulaLen        = 16
	payload1Fixed = tai64nLen + ulaLen + 4 + 1
	payload2Len   = ulaLen + 4 + 1
	tagLen        = 16
	keyLen        = 32
	// noise1Fixed is e ‖ encrypted s ‖ payload tag for message 1.
	noise1Fixed = keyLen + keyLen + tagLen + tagLen
	// minInitiationLen has one offered suite.
	minInitiationLen = headerLen + noise1Fixed + payload1Fixed + 1 + 2*macLen
	maxInitiationLen = minInitiationLen - 1 + maxSuites
	// ResponseLen is the exact size of a response message.
	ResponseLen = replyHdrLen + keyLen + payload2Len + tagLen
)

// KeyPair is a host's static X25519 key pair.
type KeyPair struct {
	Private [32]byte
	Public  [32]byte
}

// GenerateKeyPair makes a new static key pair from rnd (crypto/rand if nil).
func GenerateKeyPair(rnd io.Reader) (KeyPair, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var kp KeyPair
	if _, err := io.ReadFull(rnd, kp.Private[:]); err != nil {
		return KeyPair{}, err
	}
	return KeyPairFromPrivate(kp.Private)
}

// KeyPairFromPrivate recomputes the public half of a stored private key.
func KeyPairFromPrivate(priv [32]byte) (KeyPair, error) {
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		return KeyPair{}, err
	}
	kp := KeyPair{Private: priv}
	copy(kp.Public[:], pub)
	return kp, nil
}

// ParsePublicKey decodes a static public key as published in a TXT record
// (standard base64, padded or not, of 32 octets).
func ParsePublicKey(s string) ([32]byte, error) {
	var k [32]byte
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil || len(b) != 32 {
		return k, fmt.Errorf("%w: public key is not 32 octets of base64", ErrMalformed)
	}
	copy(k[:], b)
	return k, nil
}

// EncodePublicKey is the inverse of ParsePublicKey (padded base64).
func EncodePublicKey(k [32]byte) string { return base64.StdEncoding.EncodeToString(k[:]) }

// Config is what both roles need.
type Config struct {
	// Static is this host's key pair; its public half is in its TXT record.
	Static KeyPair
	// PSK is derived from the account secret by the caller; hosts of other
	// users have another PSK and fail the handshake.
	PSK [32]byte
	// Suites is the preference order of ESP suites; empty means
	// DefaultSuites. The initiator offers them in this order; the responder
	// picks the first of its own list that the initiator offered.
	Suites []Suite
	// Now is the clock for TAI64N timestamps and cookie rotation; nil means
	// time.Now. Tests inject a fake clock.
	Now func() time.Time
	// Rand is the randomness for ephemeral keys, indices and nonces; nil
	// means crypto/rand.
	Rand io.Reader
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Config) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

func (c *Config) suites() []Suite {
	if len(c.Suites) == 0 {
		return DefaultSuites
	}
	return c.Suites
}

func (c *Config) check() error {
	if c.Static.Public == ([32]byte{}) {
		return errors.New("handshake: Config.Static not set")
	}
	s := c.suites()
	if len(s) > maxSuites {
		return fmt.Errorf("handshake: more than %d suites", maxSuites)
	}
	for _, x := range s {
		if !x.known() {
			return fmt.Errorf("handshake: unknown suite %v", x)
		}
	}
	return nil
}

// SA is the key material for one direction's ESP security association.
type SA struct {
	// SPI identifies the SA; it was chosen by the receiving side.
	SPI uint32
	// KeyMat is the cipher key (32) followed by the salt (4).
	KeyMat [36]byte
}

// Result is what a completed handshake yields.
type Result struct {
	// PeerStatic is the peer's static public key. The responder learns it
	// from the handshake and must check that it is in the user's host list
	// (Responder's allow function does so before any state is kept).
	PeerStatic [32]byte
	// PeerULA is the peer's unique local address, the inner source address
	// its tunnel packets must carry: a packet from the tunnel with another
	// inner source is dropped, so one host cannot speak for another.
	PeerULA netip.Addr
	// Suite is the negotiated ESP cipher suite for both SAs.
	Suite Suite
	// Send is the outbound SA (the peer receives on Send.SPI); Recv the
	// inbound one (Recv.SPI is the SPI this side chose).
	Send, Recv SA
	// Confirmed reports key confirmation: true for the initiator, whose
	// Finish has authenticated the responder with the PSK; false for the
	// responder, which must wait for the first authentic ESP packet on Recv
	// before sending on Send (see the package doc).
	Confirmed bool
}

func checkULA(a netip.Addr) error {
	// A ULA is fc00::/7 (RFC 4193); a 4in6 or zoned address is a caller bug.
	if !a.Is6() || a.Is4In6() || a.Zone() != "" || !a.IsPrivate() {
		return fmt.Errorf("handshake: %v is not a ULA", a)
	}
	return nil
}

func checkSPI(spi uint32) error {
	if spi < MinSPI {
		return fmt.Errorf("handshake: SPI %d below %d", spi, MinSPI)
	}
	return nil
}

func prologue(hdr []byte) []byte {
	p := make([]byte, 0, len(prologueLabel)+headerLen)
	p = append(p, prologueLabel...)
	return append(p, hdr[:headerLen]...)
}

func mac1Key(responderPub [32]byte) []byte {
	h := sha256.New()
	h.Write([]byte("mac1----"))
	h.Write(responderPub[:])
	return h.Sum(nil)
}

func mac(key, msg []byte) [macLen]byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	var out [macLen]byte
	copy(out[:], m.Sum(nil))
	return out
}

// deriveKeyMat turns a Noise split key into an ESP KEYMAT bound to the
// suite and the SA's SPI, so the Noise transport key itself is never used.
func deriveKeyMat(splitKey [32]byte, suite Suite, spi uint32) [36]byte {
	info := make([]byte, 0, 16)
	info = append(info, "BTMM ESP v1"...)
	info = append(info, byte(suite))
	info = binary.BigEndian.AppendUint32(info, spi)
	b, err := hkdf.Expand(sha256.New, splitKey[:], string(info), 36)
	if err != nil {
		panic(err) // only for lengths > 255*32
	}
	var km [36]byte
	copy(km[:], b)
	return km
}

func randUint32(r io.Reader) (uint32, error) {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b[:]), nil
}

// Initiation is the initiator's state between sending message 1 and
// receiving message 2 (or a cookie reply). It is not safe for concurrent
// use; the caller keys pending initiations by Index.
type Initiation struct {
	cfg        Config
	hs         *noise.HandshakeState
	peerStatic [32]byte
	index      uint32
	spi        uint32
	ula        netip.Addr
	offered    []Suite
	ephemeral  [32]byte // to rebuild hs after a failed Finish
	payload    []byte   // message 1's payload, likewise
	msg        []byte   // message 1 as sent: mac1 binds cookie replies to it
	cookie     []byte   // decrypted cookie, if any
	done       bool
}

// Index is the sender index of message 1; responses and cookie replies
// carry it as their receiver index so the caller can find this Initiation.
func (st *Initiation) Index() uint32 { return st.index }

// PeerStatic is the responder's static key this initiation was made for.
func (st *Initiation) PeerStatic() [32]byte { return st.peerStatic }

// Initiate starts a handshake with the host whose static public key is
// peerStatic. localULA is this host's ULA and spi the SPI it will receive on
// (≥ MinSPI, unique among its inbound SAs). It returns message 1 (without the
// non-ESP marker) and the state to finish it with.
func Initiate(cfg Config, peerStatic [32]byte, localULA netip.Addr, spi uint32) ([]byte, *Initiation, error) {
	return initiate(cfg, peerStatic, localULA, spi, nil)
}

func initiate(cfg Config, peerStatic [32]byte, localULA netip.Addr, spi uint32, cookie []byte) ([]byte, *Initiation, error) {
	if err := cfg.check(); err != nil {
		return nil, nil, err
	}
	if err := checkULA(localULA); err != nil {
		return nil, nil, err
	}
	if err := checkSPI(spi); err != nil {
		return nil, nil, err
	}
	st := &Initiation{cfg: cfg, peerStatic: peerStatic, spi: spi, ula: localULA, cookie: cookie}
	var err error
	if st.index, err = randUint32(cfg.rand()); err != nil {
		return nil, nil, err
	}
	if _, err := io.ReadFull(cfg.rand(), st.ephemeral[:]); err != nil {
		return nil, nil, err
	}
	suites := cfg.suites()
	ts := tai64n(cfg.now())
	payload := make([]byte, 0, payload1Fixed+len(suites))
	payload = append(payload, ts[:]...)
	ula := localULA.As16()
	payload = append(payload, ula[:]...)
	payload = binary.BigEndian.AppendUint32(payload, spi)
	payload = append(payload, byte(len(suites)))
	for _, s := range suites {
		payload = append(payload, byte(s))
	}
	st.payload = payload
	st.offered = slices.Clone(suites)
	msg, err := st.build()
	if err != nil {
		return nil, nil, err
	}
	m1 := mac(mac1Key(peerStatic), msg)
	msg = append(msg, m1[:]...)
	var m2 [macLen]byte
	if cookie != nil {
		m2 = mac(cookie, msg)
	}
	msg = append(msg, m2[:]...)
	st.msg = msg
	return slices.Clone(msg), st, nil
}

// build (re)creates the initiator's Noise state from the saved ephemeral key
// and payload and returns message 1 without MACs. Encryption in message 1 is
// deterministic (fixed keys, nonce 0), so a rebuild yields the same bytes.
func (st *Initiation) build() ([]byte, error) {
	msg := make([]byte, headerLen, maxInitiationLen)
	msg[0] = TypeInitiation
	binary.BigEndian.PutUint32(msg[1:], st.index)
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite: cipherSuite,
		// The ephemeral key is generated from this reader and nothing
		// else, which is what lets build run again after a failed Finish.
		Random:                bytes.NewReader(st.ephemeral[:]),
		Pattern:               noise.HandshakeIK,
		Initiator:             true,
		Prologue:              prologue(msg),
		PresharedKey:          st.cfg.PSK[:],
		PresharedKeyPlacement: 2,
		StaticKeypair:         noise.DHKey{Private: st.cfg.Static.Private[:], Public: st.cfg.Static.Public[:]},
		PeerStatic:            st.peerStatic[:],
	})
	if err != nil {
		return nil, err
	}
	msg, _, _, err = hs.WriteMessage(msg, st.payload)
	if err != nil {
		// X25519 with the peer's key failed: a low-order point.
		return nil, fmt.Errorf("%w: %v", ErrAuth, err)
	}
	st.hs = hs
	return msg, nil
}

// Finish processes message 2 (without the non-ESP marker). On success the
// Initiation is spent; on failure it stays usable, so a forged response
// cannot cancel a handshake whose genuine response is still on its way.
func (st *Initiation) Finish(reply []byte) (Result, error) {
	if st.done {
		return Result{}, ErrUsed
	}
	if len(reply) != ResponseLen || reply[0] != TypeResponse {
		return Result{}, fmt.Errorf("%w: not a response", ErrMalformed)
	}
	if binary.BigEndian.Uint32(reply[5:9]) != st.index {
		return Result{}, fmt.Errorf("%w: receiver index mismatch", ErrMalformed)
	}
	if st.hs == nil {
		// A previous Finish failed after feeding the Noise state, which
		// flynn/noise does not fully roll back (DH results are already
		// mixed in); start again from the saved ephemeral key.
		if _, err := st.build(); err != nil {
			return Result{}, err
		}
	}
	hs := st.hs
	st.hs = nil // consumed; rebuilt on the next call if this one fails
	payload, cs1, cs2, err := hs.ReadMessage(nil, reply[replyHdrLen:])
	if err != nil || cs1 == nil || cs2 == nil {
		return Result{}, fmt.Errorf("%w: %v", ErrAuth, err)
	}
	if len(payload) != payload2Len {
		return Result{}, fmt.Errorf("%w: response payload length %d", ErrMalformed, len(payload))
	}
	res := Result{PeerStatic: st.peerStatic, Confirmed: true}
	res.PeerULA = netip.AddrFrom16([16]byte(payload[:ulaLen]))
	peerSPI := binary.BigEndian.Uint32(payload[ulaLen:])
	res.Suite = Suite(payload[ulaLen+4])
	if err := checkULA(res.PeerULA); err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := checkSPI(peerSPI); err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !slices.Contains(st.offered, res.Suite) {
		return Result{}, fmt.Errorf("%w: responder chose %v, not offered", ErrMalformed, res.Suite)
	}
	// Initiator sends with the first split key, receives with the second.
	res.Send = SA{SPI: peerSPI, KeyMat: deriveKeyMat(cs1.UnsafeKey(), res.Suite, peerSPI)}
	res.Recv = SA{SPI: st.spi, KeyMat: deriveKeyMat(cs2.UnsafeKey(), res.Suite, st.spi)}
	st.done = true
	return res, nil
}

// Responder answers initiations. It is safe for concurrent use.
type Responder struct {
	cfg   Config
	allow func(peerStatic [32]byte) bool
	mac1  []byte
	// Cookies makes and checks cookies for RespondFrom; it rotates its
	// secret on its own.
	Cookies *CookieMaker

	mu         sync.Mutex
	timestamps map[[32]byte][tai64nLen]byte
	maxEntries int
}

// DefaultMaxPeers bounds the replay table. Entries are only made for keys
// allow accepts, i.e. the user's hosts, so this is a backstop.
const DefaultMaxPeers = 4096

// NewResponder makes a Responder. allow is called with the initiator's
// static key once message 1 has authenticated it (proof of its private key,
// not yet of the PSK); it should return true only for the user's own hosts.
// A nil allow accepts every key, which lets anyone with any key pair fill
// the replay table and make the responder do work: use it only in tests.
func NewResponder(cfg Config, allow func(peerStatic [32]byte) bool) (*Responder, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cm, err := NewCookieMaker(cfg.Rand, cfg.Now)
	if err != nil {
		return nil, err
	}
	return &Responder{
		cfg: cfg, allow: allow, mac1: mac1Key(cfg.Static.Public), Cookies: cm,
		timestamps: make(map[[32]byte][tai64nLen]byte), maxEntries: DefaultMaxPeers,
	}, nil
}

// Respond processes message 1 (without the non-ESP marker) and returns
// message 2. localULA is this host's ULA, spi the SPI it will receive on.
// It does not check mac2 and never asks for a cookie; see RespondFrom.
func (r *Responder) Respond(msg []byte, localULA netip.Addr, spi uint32) ([]byte, Result, error) {
	if err := r.precheck(msg, localULA, spi); err != nil {
		return nil, Result{}, err
	}
	return r.respond(msg, localULA, spi)
}

// RespondFrom is Respond for an initiation that arrived from src. When
// underLoad is true and the initiation's mac2 is not valid for src, it
// returns a cookie reply and ErrCookieRequired without doing any DH: the
// caller sends the reply (after the non-ESP marker) and forgets the
// initiation. When underLoad is false it behaves as Respond.
func (r *Responder) RespondFrom(msg []byte, src netip.AddrPort, underLoad bool, localULA netip.Addr, spi uint32) ([]byte, Result, error) {
	if err := r.precheck(msg, localULA, spi); err != nil {
		return nil, Result{}, err
	}
	if underLoad {
		n := len(msg)
		if !r.Cookies.checkMAC2(src, msg[:n-macLen], msg[n-macLen:]) {
			reply, err := r.Cookies.Reply(r.cfg.Static.Public, src, msg)
			if err != nil {
				return nil, Result{}, err
			}
			return reply, Result{}, ErrCookieRequired
		}
	}
	return r.respond(msg, localULA, spi)
}

// HasValidMAC2 reports whether an initiation from src carries a mac2 made
// with the cookie this responder gave src (and may be rate limited by
// src's address: it cannot be spoofed). It does no DH.
func (r *Responder) HasValidMAC2(msg []byte, src netip.AddrPort) bool {
	n := len(msg)
	if n < minInitiationLen || n > maxInitiationLen {
		return false
	}
	return r.Cookies.checkMAC2(src, msg[:n-macLen], msg[n-macLen:])
}

// precheck does the cheap checks: arguments, length, type and mac1.
func (r *Responder) precheck(msg []byte, localULA netip.Addr, spi uint32) error {
	if err := checkULA(localULA); err != nil {
		return err
	}
	if err := checkSPI(spi); err != nil {
		return err
	}
	if len(msg) < minInitiationLen || len(msg) > maxInitiationLen || msg[0] != TypeInitiation {
		return fmt.Errorf("%w: not an initiation", ErrMalformed)
	}
	n := len(msg)
	want := mac(r.mac1, msg[:n-2*macLen])
	if subtle.ConstantTimeCompare(want[:], msg[n-2*macLen:n-macLen]) != 1 {
		return fmt.Errorf("%w: mac1", ErrAuth)
	}
	return nil
}

func (r *Responder) respond(msg []byte, localULA netip.Addr, spi uint32) ([]byte, Result, error) {
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:           cipherSuite,
		Random:                r.cfg.rand(),
		Pattern:               noise.HandshakeIK,
		Initiator:             false,
		Prologue:              prologue(msg),
		PresharedKey:          r.cfg.PSK[:],
		PresharedKeyPlacement: 2,
		StaticKeypair:         noise.DHKey{Private: r.cfg.Static.Private[:], Public: r.cfg.Static.Public[:]},
	})
	if err != nil {
		return nil, Result{}, err
	}
	payload, _, _, err := hs.ReadMessage(nil, msg[headerLen:len(msg)-2*macLen])
	if err != nil {
		return nil, Result{}, fmt.Errorf("%w: %v", ErrAuth, err)
	}
	if len(payload) < payload1Fixed+1 {
		return nil, Result{}, fmt.Errorf("%w: initiation payload too short", ErrMalformed)
	}
	var res Result
	copy(res.PeerStatic[:], hs.PeerStatic())
	var ts [tai64nLen]byte
	copy(ts[:], payload)
	p := payload[tai64nLen:]
	res.PeerULA = netip.AddrFrom16([16]byte(p[:ulaLen]))
	peerSPI := binary.BigEndian.Uint32(p[ulaLen:])
	n := int(p[ulaLen+4])
	offered := p[ulaLen+5:]
	if n == 0 || n > maxSuites || len(offered) != n {
		return nil, Result{}, fmt.Errorf("%w: suite list", ErrMalformed)
	}
	if err := checkULA(res.PeerULA); err != nil {
		return nil, Result{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := checkSPI(peerSPI); err != nil {
		return nil, Result{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	res.Suite = 0
	for _, s := range r.cfg.suites() {
		if slices.Contains(offered, byte(s)) {
			res.Suite = s
			break
		}
	}
	if res.Suite == 0 {
		return nil, Result{}, ErrNoSuite
	}
	if r.allow != nil && !r.allow(res.PeerStatic) {
		return nil, Result{}, ErrNotAllowed
	}

	index, err := randUint32(r.cfg.rand())
	if err != nil {
		return nil, Result{}, err
	}
	reply := make([]byte, replyHdrLen, ResponseLen)
	reply[0] = TypeResponse
	binary.BigEndian.PutUint32(reply[1:], index)
	copy(reply[5:9], msg[1:5])
	p2 := make([]byte, 0, payload2Len)
	ula := localULA.As16()
	p2 = append(p2, ula[:]...)
	p2 = binary.BigEndian.AppendUint32(p2, spi)
	p2 = append(p2, byte(res.Suite))
	reply, cs1, cs2, err := hs.WriteMessage(reply, p2)
	if err != nil || cs1 == nil || cs2 == nil {
		return nil, Result{}, fmt.Errorf("%w: %v", ErrAuth, err)
	}
	// Record the timestamp last, once nothing else can fail, so that a
	// failed attempt does not lock out the genuine initiation.
	if !r.acceptTimestamp(res.PeerStatic, ts) {
		return nil, Result{}, ErrReplay
	}
	res.Send = SA{SPI: peerSPI, KeyMat: deriveKeyMat(cs2.UnsafeKey(), res.Suite, peerSPI)}
	res.Recv = SA{SPI: spi, KeyMat: deriveKeyMat(cs1.UnsafeKey(), res.Suite, spi)}
	return reply, res, nil
}

// acceptTimestamp records ts for peer if it is greater than the last one
// accepted, atomically, so two copies of one initiation racing through
// Respond cannot both succeed.
func (r *Responder) acceptTimestamp(peer [32]byte, ts [tai64nLen]byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if last, ok := r.timestamps[peer]; ok {
		if subtle.ConstantTimeCompare(ts[:], last[:]) == 1 || string(ts[:]) < string(last[:]) {
			return false
		}
	} else if len(r.timestamps) >= r.maxEntries {
		// Evict the entry with the oldest timestamp: the host least likely
		// to be active. This reopens a replay window for it, which costs
		// no keys (the replayer cannot finish) but could disturb its SA.
		var oldest [32]byte
		var oldTS [tai64nLen]byte
		first := true
		for k, v := range r.timestamps {
			if first || string(v[:]) < string(oldTS[:]) {
				oldest, oldTS, first = k, v, false
			}
		}
		delete(r.timestamps, oldest)
	}
	r.timestamps[peer] = ts
	return true
}

// Forget drops the replay entry for peer, e.g. when a host is removed from
// the user's host list.
func (r *Responder) Forget(peer [32]byte) {
	r.mu.Lock()
	delete(r.timestamps, peer)
	r.mu.Unlock()
}

// tai64n encodes t as TAI64N (2^62 + seconds, nanoseconds), like WireGuard
// ignoring leap seconds: only monotonicity matters here. Nanoseconds are
// truncated to a multiple of 2^24 (≈16.8 ms) so the timestamp does not leak
// a precise clock reading; a host thus cannot start two accepted initiations
// to one peer within ~17 ms, which it never needs to.
func tai64n(t time.Time) [tai64nLen]byte {
	var b [tai64nLen]byte
	binary.BigEndian.PutUint64(b[:], uint64(1<<62)+uint64(t.Unix()))
	binary.BigEndian.PutUint32(b[8:], uint32(t.Nanosecond())&^(1<<24-1))
	return b
}
