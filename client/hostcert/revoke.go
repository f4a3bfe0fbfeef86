package hostcert

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// RevocationLabel is the first label of the revocation list's name in the
// user's domain.
const RevocationLabel = "_btmm-revoked"

// RevocationName is where the list is published: _btmm-revoked.USER.ZONE.
func RevocationName(domain string) string {
	return RevocationLabel + "." + dns.CanonicalName(domain)
}

// MaxRevoked bounds the list: 1,024 keys make a 32 KiB record, well within
// a DNS message over TCP.
const MaxRevoked = 1024

// chunk is the base64 characters per TXT string after "rl=".
const chunk = 248

// revContext starts every message a revocation list signs.
const revContext = "btmm revocations v1\x00"

// Revocations is a signed list of revoked host static keys.
type Revocations struct {
	KeyID  KeyID
	Serial uint64
	Keys   [][32]byte // ascending, no duplicates
	Sig    [ed25519.SignatureSize]byte
}

// ErrMalformedList is wrapped by ParseRevocations' errors.
var ErrMalformedList = errors.New("malformed revocation list")

// SignRevocations signs the list of keys for domain with serial.
func SignRevocations(k UserKey, domain string, serial uint64, keys [][32]byte) (Revocations, error) {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	keys = slices.Compact(keys)
	if len(keys) > MaxRevoked {
		return Revocations{}, fmt.Errorf("hostcert: %d revoked keys, at most %d", len(keys), MaxRevoked)
	}
	r := Revocations{KeyID: k.Public().ID(), Serial: serial, Keys: keys}
	msg, err := r.signed(domain)
	if err != nil {
		return Revocations{}, err
	}
	copy(r.Sig[:], k.sign(msg))
	return r, nil
}

func (r Revocations) body() []byte {
	b := make([]byte, 0, 19+32*len(r.Keys)+ed25519.SignatureSize)
	b = append(b, Version)
	b = append(b, r.KeyID[:]...)
	b = binary.BigEndian.AppendUint64(b, r.Serial)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Keys)))
	for _, k := range r.Keys {
		b = append(b, k[:]...)
	}
	return b
}

func (r Revocations) signed(domain string) ([]byte, error) {
	wire, err := canonicalWire(domain)
	if err != nil {
		return nil, err
	}
	msg := append([]byte(revContext), r.body()...)
	return append(msg, wire...), nil
}

// Marshal is the list's octets.
func (r Revocations) Marshal() []byte { return append(r.body(), r.Sig[:]...) }

// TXT is the list as the strings of its TXT record.
func (r Revocations) TXT() []string {
	s := base64.StdEncoding.EncodeToString(r.Marshal())
	out := []string{"txtvers=1"}
	for len(s) > 0 {
		n := min(chunk, len(s))
		out = append(out, "rl="+s[:n])
		s = s[n:]
	}
	return out
}

// ParseRevocations reads a list's octets; it checks the layout, not the
// signature (Verify).
func ParseRevocations(b []byte) (Revocations, error) {
	if len(b) < 19+ed25519.SignatureSize {
		return Revocations{}, fmt.Errorf("%w: %d octets", ErrMalformedList, len(b))
	}
	if b[0] != Version {
		return Revocations{}, fmt.Errorf("%w: version %d, want %d", ErrMalformedList, b[0], Version)
	}
	var r Revocations
	copy(r.KeyID[:], b[1:9])
	r.Serial = binary.BigEndian.Uint64(b[9:17])
	n := int(binary.BigEndian.Uint16(b[17:19]))
	if n > MaxRevoked {
		return Revocations{}, fmt.Errorf("%w: %d keys, at most %d", ErrMalformedList, n, MaxRevoked)
	}
	if len(b) != 19+32*n+ed25519.SignatureSize {
		return Revocations{}, fmt.Errorf("%w: %d octets for %d keys", ErrMalformedList, len(b), n)
	}
	r.Keys = make([][32]byte, n)
	for i := range n {
		copy(r.Keys[i][:], b[19+32*i:])
		if i > 0 && bytes.Compare(r.Keys[i-1][:], r.Keys[i][:]) >= 0 {
			return Revocations{}, fmt.Errorf("%w: keys not in ascending order", ErrMalformedList)
		}
	}
	copy(r.Sig[:], b[19+32*n:])
	return r, nil
}

// ParseRevocationsTXT reads a list from its TXT record's strings: the
// "rl=" chunks, in order, joined; other strings are ignored.
func ParseRevocationsTXT(txt []string) (Revocations, error) {
	var s strings.Builder
	for _, t := range txt {
		if c, ok := strings.CutPrefix(t, "rl="); ok {
			s.WriteString(c)
		}
	}
	if s.Len() == 0 {
		return Revocations{}, fmt.Errorf("%w: no rl= strings", ErrMalformedList)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s.String())
	if err != nil {
		return Revocations{}, fmt.Errorf("%w: not base64", ErrMalformedList)
	}
	return ParseRevocations(b)
}

// Verify checks the list's signature for domain under one of the pins.
func (r Revocations) Verify(pins []PublicKey, domain string) error {
	for _, p := range pins {
		if p.ID() != r.KeyID {
			continue
		}
		msg, err := r.signed(domain)
		if err != nil {
			return err
		}
		if !ed25519.Verify(p[:], msg, r.Sig[:]) {
			return fmt.Errorf("revocation list: %w", ErrBadSignature)
		}
		return nil
	}
	return fmt.Errorf("revocation list: %w (key ID %x)", ErrUnknownKey, r.KeyID)
}

// Revoked reports whether static is on the list.
func (r Revocations) Revoked(static [32]byte) bool {
	_, ok := slices.BinarySearchFunc(r.Keys, static, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	return ok
}

// NextSerial is the serial of a list signed at now after one of serial
// prev: now in Unix nanoseconds, or prev+1 if the clock is behind.
func NextSerial(prev uint64, now time.Time) uint64 {
	s := uint64(max(now.UnixNano(), 0))
	return max(s, prev+1)
}
