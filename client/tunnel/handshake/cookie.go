package handshake

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// CookieRotation is how long a cookie secret lives. A cookie stays valid
// for between one and two rotations (the previous secret is still accepted),
// long enough for a retry, short enough that a cookie obtained from one
// source address is soon useless.
const CookieRotation = 2 * time.Minute

// CookieLen is the size of a cookie.
const CookieLen = 16

// CookieReplyLen is the exact size of a cookie reply message.
const CookieReplyLen = replyHdrLen + chacha20poly1305.NonceSizeX + CookieLen + tagLen

// CookieMaker computes cookies: MACs of a datagram's source address and port
// under a random secret that rotates every CookieRotation. Only the host that
// receives traffic at that address can learn its cookie, so an initiation
// carrying a valid mac2 did not come from a spoofed source. It is safe for
// concurrent use.
type CookieMaker struct {
	rnd io.Reader
	now func() time.Time

	mu      sync.Mutex
	cur     [32]byte
	prev    [32]byte
	hasPrev bool
	born    time.Time
}

// NewCookieMaker makes a CookieMaker. nil rnd means crypto/rand, nil now
// means time.Now.
func NewCookieMaker(rnd io.Reader, now func() time.Time) (*CookieMaker, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if now == nil {
		now = time.Now
	}
	c := &CookieMaker{rnd: rnd, now: now, born: now()}
	if _, err := io.ReadFull(rnd, c.cur[:]); err != nil {
		return nil, err
	}
	return c, nil
}

// rotate replaces the secret when it is too old. Called with mu held.
func (c *CookieMaker) rotate() {
	now := c.now()
	age := now.Sub(c.born)
	if age < CookieRotation && age >= 0 {
		return
	}
	var next [32]byte
	if _, err := io.ReadFull(c.rnd, next[:]); err != nil {
		return // keep the old secret rather than use a weak one
	}
	// After a long idle period the previous secret is too old to honour.
	c.prev, c.hasPrev = c.cur, age < 2*CookieRotation
	c.cur, c.born = next, now
}

func cookieFor(secret *[32]byte, src netip.AddrPort) [CookieLen]byte {
	// IPv4 sources are written as IPv4-mapped IPv6 so both families share
	// one fixed 18-octet input: address (16) ‖ port (2).
	var in [18]byte
	a := src.Addr().Unmap().As16()
	copy(in[:], a[:])
	binary.BigEndian.PutUint16(in[16:], src.Port())
	m := hmac.New(sha256.New, secret[:])
	m.Write(in[:])
	var out [CookieLen]byte
	copy(out[:], m.Sum(nil))
	return out
}

// Cookie returns the current cookie for the source address src.
func (c *CookieMaker) Cookie(src netip.AddrPort) [CookieLen]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotate()
	return cookieFor(&c.cur, src)
}

// Valid reports whether cookie is src's cookie under the current or the
// previous secret.
func (c *CookieMaker) Valid(src netip.AddrPort, cookie [CookieLen]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotate()
	want := cookieFor(&c.cur, src)
	if subtle.ConstantTimeCompare(want[:], cookie[:]) == 1 {
		return true
	}
	if c.hasPrev {
		want = cookieFor(&c.prev, src)
		return subtle.ConstantTimeCompare(want[:], cookie[:]) == 1
	}
	return false
}

// checkMAC2 checks mac2 = MAC(cookie(src), covered) against the current and
// the previous secret.
func (c *CookieMaker) checkMAC2(src netip.AddrPort, covered, mac2 []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotate()
	secrets := []*[32]byte{&c.cur}
	if c.hasPrev {
		secrets = append(secrets, &c.prev)
	}
	ok := 0
	for _, s := range secrets {
		ck := cookieFor(s, src)
		want := mac(ck[:], covered)
		ok |= subtle.ConstantTimeCompare(want[:], mac2)
	}
	return ok == 1
}

func cookieKey(responderPub [32]byte) []byte {
	h := sha256.New()
	h.Write([]byte("cookie--"))
	h.Write(responderPub[:])
	return h.Sum(nil)
}

// Reply builds a cookie reply to initiation (as received, its mac1 already
// checked) from src. responderPub is the responder's own static public key.
func (c *CookieMaker) Reply(responderPub [32]byte, src netip.AddrPort, initiation []byte) ([]byte, error) {
	if len(initiation) < minInitiationLen || initiation[0] != TypeInitiation {
		return nil, fmt.Errorf("%w: not an initiation", ErrMalformed)
	}
	aead, err := chacha20poly1305.NewX(cookieKey(responderPub))
	if err != nil {
		return nil, err
	}
	cookie := c.Cookie(src)
	out := make([]byte, replyHdrLen+chacha20poly1305.NonceSizeX, CookieReplyLen)
	out[0] = TypeCookieReply
	copy(out[5:9], initiation[1:5])
	nonce := out[replyHdrLen:]
	if _, err := io.ReadFull(c.rnd, nonce); err != nil {
		return nil, err
	}
	n := len(initiation)
	return aead.Seal(out, nonce, cookie[:], initiation[n-2*macLen:n-macLen]), nil
}

// ConsumeCookie decrypts a cookie reply to this initiation and keeps the
// cookie for Retry. A reply that does not decrypt (forged, or for another
// initiation) returns ErrAuth and changes nothing.
func (st *Initiation) ConsumeCookie(reply []byte) error {
	if len(reply) != CookieReplyLen || reply[0] != TypeCookieReply {
		return fmt.Errorf("%w: not a cookie reply", ErrMalformed)
	}
	if binary.BigEndian.Uint32(reply[5:9]) != st.index {
		return fmt.Errorf("%w: receiver index mismatch", ErrMalformed)
	}
	aead, err := chacha20poly1305.NewX(cookieKey(st.peerStatic))
	if err != nil {
		return err
	}
	n := len(st.msg)
	nonce := reply[replyHdrLen : replyHdrLen+chacha20poly1305.NonceSizeX]
	cookie, err := aead.Open(nil, nonce, reply[replyHdrLen+chacha20poly1305.NonceSizeX:], st.msg[n-2*macLen:n-macLen])
	if err != nil {
		return fmt.Errorf("%w: cookie reply", ErrAuth)
	}
	st.cookie = cookie
	return nil
}

// Retry makes a fresh initiation (new ephemeral key, index and timestamp)
// with the same peer, ULA, SPI and configuration, carrying a mac2 made with
// the cookie from ConsumeCookie, if any. The old Initiation should be
// dropped. The cookie expires at the responder within 2–4 minutes; after
// that the responder, if still loaded, just sends a new one.
func (st *Initiation) Retry() ([]byte, *Initiation, error) {
	return initiate(st.cfg, st.peerStatic, st.ula, st.spi, st.cookie)
}
