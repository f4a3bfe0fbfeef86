package hostcert

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/miekg/dns"
	"golang.org/x/crypto/argon2"

	"github.com/openbtmm/btmm/client/secret"
)

// Files in a host's state directory.
const (
	// PinFile holds the pinned user public keys.
	PinFile = "user.pub"
	// KeyFile holds the user's private seed, on signing hosts.
	KeyFile = "user.key"
	// CertFile holds the host's certificate, on hosts that do not sign
	// their own.
	CertFile = "host.cert"
	// RevokedFile keeps the last valid revocation list seen.
	RevokedFile = "revoked"
)

// KeyVersion names the password derivation of the user key, and starts
// its salt.
const KeyVersion = "btmm-userkey-v1"

// KeyID identifies a user public key: SHA-256 of it, first 8 octets.
type KeyID [8]byte

// PublicKey is a user's Ed25519 public key.
type PublicKey [ed25519.PublicKeySize]byte

// ID is the key's KeyID.
func (p PublicKey) ID() KeyID {
	h := sha256.Sum256(p[:])
	return KeyID(h[:8])
}

// String is the key in standard padded base64, as PinFile holds it.
func (p PublicKey) String() string { return base64.StdEncoding.EncodeToString(p[:]) }

// ParsePublicKey reads a key in standard padded base64.
func ParsePublicKey(s string) (PublicKey, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return PublicKey{}, fmt.Errorf("hostcert: user public key: not base64: %v", err)
	}
	if len(b) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("hostcert: user public key: %d octets, an Ed25519 key has %d", len(b), ed25519.PublicKeySize)
	}
	return PublicKey(b), nil
}

// UserKey is a user's Ed25519 signing key.
type UserKey struct {
	seed [ed25519.SeedSize]byte
	priv ed25519.PrivateKey
}

// UserKeyFromSeed makes the key of a 32-octet seed (RFC 8032 §5.1.5).
func UserKeyFromSeed(seed [32]byte) UserKey {
	return UserKey{seed: seed, priv: ed25519.NewKeyFromSeed(seed[:])}
}

// NewUserKey makes a random user key.
func NewUserKey() (UserKey, error) {
	var seed [32]byte
	if _, err := io.ReadFull(rand.Reader, seed[:]); err != nil {
		return UserKey{}, err
	}
	return UserKeyFromSeed(seed), nil
}

// DeriveUserKey derives the user key of domain (alice.members.example.com)
// from password, as the package comment says.
func DeriveUserKey(password []byte, domain string) (UserKey, error) {
	if len(password) == 0 {
		return UserKey{}, errors.New("hostcert: empty password")
	}
	salt, err := KeySalt(domain)
	if err != nil {
		return UserKey{}, err
	}
	seed := argon2.IDKey(password, []byte(salt), secret.Time, secret.Memory, secret.Threads, ed25519.SeedSize)
	return UserKeyFromSeed([32]byte(seed)), nil
}

// KeySalt is the salt of the user key's derivation for domain.
func KeySalt(domain string) (string, error) {
	name := dns.CanonicalName(domain)
	if _, ok := dns.IsDomainName(name); !ok || name == "." {
		return "", fmt.Errorf("hostcert: %q is not a user domain", domain)
	}
	return KeyVersion + ":" + name, nil
}

// Public is the key's public half.
func (k UserKey) Public() PublicKey { return PublicKey(k.priv.Public().(ed25519.PublicKey)) }

// Valid reports whether k holds a key (the zero UserKey does not).
func (k UserKey) Valid() bool { return k.priv != nil }

// String shows the public key only, so that logging a UserKey does not
// leak the private one.
func (k UserKey) String() string { return "Ed25519 user key " + k.Public().String() }

func (k UserKey) sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// The files
//
// Both are text: '#' comment lines, blank lines, and base64 lines. The key
// file holds one or more 32-octet seeds (the first is the key in use; a
// second is kept while the user key is being replaced), the pin file one
// or more public keys. Written by FormatKeyFile and FormatPinFile:
//
//	# btmm-client user key: Ed25519 private seed, base64. Keep it secret.
//	# Public key: <base64> (ID <hex>)
//	<base64 seed>
//
//	# btmm-client: the user's public keys that this host trusts.
//	<base64 public key>

// fileMax bounds what the parsers read.
const fileMax = 4096

// ErrInsecureKeyFile is returned (wrapped) for a user key file that group
// or others may read or write.
var ErrInsecureKeyFile = errors.New("insecure user key file")

// lines returns the non-comment, non-blank lines of a key or pin file,
// each decoded from base64 and n octets long.
func lines(b []byte, n int) ([][]byte, error) {
	if len(b) > fileMax {
		return nil, fmt.Errorf("longer than %d octets", fileMax)
	}
	var out [][]byte
	for i, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		v, err := base64.StdEncoding.Strict().DecodeString(string(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64: %v", i+1, err)
		}
		if len(v) != n {
			return nil, fmt.Errorf("line %d: %d octets, want %d", i+1, len(v), n)
		}
		out = append(out, v)
	}
	return out, nil
}

// ParseKeyFile reads the text of a user key file: one key or more, the
// first the one in use, the others kept while the user key is replaced.
func ParseKeyFile(b []byte) ([]UserKey, error) {
	l, err := lines(b, ed25519.SeedSize)
	if err == nil && len(l) == 0 {
		err = errors.New("no key in it")
	}
	if err != nil {
		return nil, fmt.Errorf("hostcert: user key file: %w", err)
	}
	out := make([]UserKey, len(l))
	for i, v := range l {
		out[i] = UserKeyFromSeed([32]byte(v))
	}
	return out, nil
}

// FormatKeyFile is the text of the key file of keys.
func FormatKeyFile(keys ...UserKey) []byte {
	b := []byte("# btmm-client user key: Ed25519 private seed, base64. Keep it secret.\n")
	for _, k := range keys {
		b = fmt.Appendf(b, "# Public key: %s (ID %x)\n", k.Public(), k.Public().ID())
	}
	for _, k := range keys {
		b = fmt.Appendf(b, "%s\n", base64.StdEncoding.EncodeToString(k.seed[:]))
	}
	return b
}

// ParsePinFile reads the text of a pin file: at least one key.
func ParsePinFile(b []byte) ([]PublicKey, error) {
	l, err := lines(b, ed25519.PublicKeySize)
	if err == nil && len(l) == 0 {
		err = errors.New("no key in it")
	}
	if err != nil {
		return nil, fmt.Errorf("hostcert: pin file: %w", err)
	}
	out := make([]PublicKey, len(l))
	for i, v := range l {
		out[i] = PublicKey(v)
	}
	return out, nil
}

// FormatPinFile is the text of a pin file of keys.
func FormatPinFile(keys ...PublicKey) []byte {
	b := []byte("# btmm-client: the user's public keys that this host trusts (user key IDs ")
	for i, k := range keys {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = fmt.Appendf(b, "%x", k.ID())
	}
	b = append(b, ").\n"...)
	for _, k := range keys {
		b = fmt.Appendf(b, "%s\n", k)
	}
	return b
}

// LoadKeyFile reads a user key file, which must be a regular file that
// neither group nor others may read or write.
func LoadKeyFile(path string) ([]UserKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("hostcert: %s: %w: mode %v; chmod 600 it", path, ErrInsecureKeyFile, fi.Mode())
	}
	b, err := readMax(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseKeyFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadPinFile reads a pin file.
func LoadPinFile(path string) ([]PublicKey, error) {
	b, err := readMax(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePinFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// readMax reads at most fileMax+1 octets of path: the parsers refuse
// more.
func readMax(path string) ([]byte, error) { return readLimit(path, fileMax+1) }

func readLimit(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// WriteFile writes b to path with mode perm, whole or not at all (a
// temporary file renamed into place), making the directory (0700) if
// needed.
func WriteFile(path string, b []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}

// pskInfo is the HKDF info string of TunnelPSK.
const pskInfo = "btmm tunnel psk v2 (user-key trust)"

func pskOf(domain string) [32]byte {
	k, err := hkdf.Key(sha256.New, []byte(pskInfo), []byte(domain), pskInfo, 32)
	if err != nil {
		panic("hostcert: HKDF: " + err.Error()) // cannot happen for 32 octets
	}
	return [32]byte(k)
}
