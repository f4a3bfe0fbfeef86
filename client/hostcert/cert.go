package hostcert

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Version is the certificate and revocation list version this package
// writes and reads.
const Version = 1

// CertSize is the length of a certificate in octets.
const CertSize = 1 + 8 + 8 + 8 + 16 + 32 + ed25519.SignatureSize

// TXTKey is the key of the certificate in the host's TXT record.
const TXTKey = "cert="

// certContext starts every message a certificate signs.
const certContext = "btmm host cert v1\x00"

// Validity is how long a certificate a host signs for itself is valid;
// it signs a new one once less than half is left (Cert.NeedsRenewal).
const Validity = 30 * 24 * time.Hour

// Skew is how far before now a new certificate's validity starts, so that
// a peer whose clock is behind still accepts it.
const Skew = time.Hour

// Cert vouches for a host's static key and tunnel address under its name.
type Cert struct {
	KeyID     KeyID
	NotBefore uint64 // Unix seconds
	NotAfter  uint64
	ULA       netip.Addr
	Static    [32]byte
	Sig       [ed25519.SignatureSize]byte
}

// Errors of Verify: why a host is refused. Each is wrapped with detail.
var (
	ErrNoCert       = errors.New("no certificate")
	ErrMalformed    = errors.New("malformed certificate")
	ErrUnknownKey   = errors.New("signed by a user key not pinned here")
	ErrBadSignature = errors.New("bad signature")
	ErrMismatch     = errors.New("certificate does not match the host's records")
	ErrExpired      = errors.New("certificate expired")
	ErrNotYetValid  = errors.New("certificate not yet valid")
	ErrRevoked      = errors.New("host key revoked")
)

// Sign makes the certificate of a host: name (HOST.USER.ZONE), its ULA and
// static key, valid from notBefore to notAfter.
func Sign(k UserKey, name string, ula netip.Addr, static [32]byte, notBefore, notAfter time.Time) (Cert, error) {
	if !ula.Is6() || ula.Is4In6() {
		return Cert{}, fmt.Errorf("hostcert: ULA %v is not IPv6", ula)
	}
	c := Cert{KeyID: k.Public().ID(), NotBefore: unix(notBefore), NotAfter: unix(notAfter), ULA: ula, Static: static}
	msg, err := c.signed(name)
	if err != nil {
		return Cert{}, err
	}
	copy(c.Sig[:], k.sign(msg))
	return c, nil
}

func unix(t time.Time) uint64 {
	if t.Unix() < 0 {
		return 0
	}
	return uint64(t.Unix())
}

// body is octets 0 to 72.
func (c Cert) body() []byte {
	b := make([]byte, 0, CertSize)
	b = append(b, Version)
	b = append(b, c.KeyID[:]...)
	b = binary.BigEndian.AppendUint64(b, c.NotBefore)
	b = binary.BigEndian.AppendUint64(b, c.NotAfter)
	ula := c.ULA.As16()
	b = append(b, ula[:]...)
	return append(b, c.Static[:]...)
}

// signed is the message the signature covers.
func (c Cert) signed(name string) ([]byte, error) {
	wire, err := canonicalWire(name)
	if err != nil {
		return nil, err
	}
	msg := append([]byte(certContext), c.body()...)
	return append(msg, wire...), nil
}

// canonicalWire is name, lowercased and fully qualified, in DNS wire
// format.
func canonicalWire(name string) ([]byte, error) {
	n := dns.CanonicalName(name)
	buf := make([]byte, 256)
	off, err := dns.PackDomainName(n, buf, 0, nil, false)
	if err != nil || n == "." {
		return nil, fmt.Errorf("hostcert: %q is not a domain name", name)
	}
	return buf[:off], nil
}

// Marshal is the certificate's CertSize octets.
func (c Cert) Marshal() []byte { return append(c.body(), c.Sig[:]...) }

// String is the certificate as its TXT string: "cert=" and base64.
func (c Cert) String() string { return TXTKey + base64.StdEncoding.EncodeToString(c.Marshal()) }

// Parse reads a certificate's octets. It checks the layout only, not the
// signature (Verify).
func Parse(b []byte) (Cert, error) {
	if len(b) != CertSize {
		return Cert{}, fmt.Errorf("%w: %d octets, want %d", ErrMalformed, len(b), CertSize)
	}
	if b[0] != Version {
		return Cert{}, fmt.Errorf("%w: version %d, want %d", ErrMalformed, b[0], Version)
	}
	var c Cert
	copy(c.KeyID[:], b[1:9])
	c.NotBefore = binary.BigEndian.Uint64(b[9:17])
	c.NotAfter = binary.BigEndian.Uint64(b[17:25])
	c.ULA = netip.AddrFrom16([16]byte(b[25:41]))
	copy(c.Static[:], b[41:73])
	copy(c.Sig[:], b[73:])
	if c.NotAfter < c.NotBefore {
		return Cert{}, fmt.Errorf("%w: not after precedes not before", ErrMalformed)
	}
	return c, nil
}

// ParseString reads a certificate from its TXT string (with or without
// the "cert=" key).
func ParseString(s string) (Cert, error) {
	s = strings.TrimPrefix(s, TXTKey)
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return Cert{}, fmt.Errorf("%w: not base64", ErrMalformed)
	}
	return Parse(b)
}

// Verify checks that c vouches for the host name at ula with static key,
// under one of the pinned keys, at now. The error wraps one of the Err
// values above.
func (c Cert) Verify(pins []PublicKey, name string, ula netip.Addr, static [32]byte, now time.Time) error {
	var pin *PublicKey
	for i := range pins {
		if pins[i].ID() == c.KeyID {
			pin = &pins[i]
			break
		}
	}
	if pin == nil {
		return fmt.Errorf("%w (key ID %x)", ErrUnknownKey, c.KeyID)
	}
	msg, err := c.signed(name)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMismatch, err)
	}
	if !ed25519.Verify(pin[:], msg, c.Sig[:]) {
		return fmt.Errorf("%w (for %s under key ID %x)", ErrBadSignature, dns.CanonicalName(name), c.KeyID)
	}
	if c.ULA != ula.Unmap() {
		return fmt.Errorf("%w: the certificate is for tunnel address %v, the records give %v", ErrMismatch, c.ULA, ula)
	}
	if c.Static != static {
		return fmt.Errorf("%w: the certificate is for another static key than pk=", ErrMismatch)
	}
	t := unix(now)
	if t < c.NotBefore {
		return fmt.Errorf("%w: until %v", ErrNotYetValid, time.Unix(int64(min(c.NotBefore, 1<<62)), 0).UTC())
	}
	if t > c.NotAfter {
		return fmt.Errorf("%w at %v", ErrExpired, time.Unix(int64(min(c.NotAfter, 1<<62)), 0).UTC())
	}
	return nil
}

// NeedsRenewal reports whether less than half of c's validity is left at
// now.
func (c Cert) NeedsRenewal(now time.Time) bool {
	t := unix(now)
	return t >= c.NotBefore+(c.NotAfter-c.NotBefore)/2
}
