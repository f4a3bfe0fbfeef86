package identity

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyPair is a host's static X25519 key pair (RFC 7748). Its public half is
// published in the host's TXT record as pk=…, which only the user's TSIG key
// can write, and authenticates the host in the Noise handshake between tunnels.
type KeyPair struct {
	Private, Public [32]byte
}

// KeyPairFromPrivate completes a key pair from its private half: Public is
// X25519(Private, 9), the base point (RFC 7748 §6.1). Every 32-octet string
// is a valid X25519 private key: the scalar is clamped when it is used, not
// when it is stored.
func KeyPairFromPrivate(private [32]byte) KeyPair {
	k, err := ecdh.X25519().NewPrivateKey(private[:])
	if err != nil {
		panic("identity: X25519 refused a 32-octet key: " + err.Error()) // cannot happen
	}
	kp := KeyPair{Private: private}
	copy(kp.Public[:], k.PublicKey().Bytes())
	return kp
}

// PublicBase64 is the public key in standard base64 with padding (44
// characters), the value of the TXT record's pk= key. RFC 6763 §6.5 would
// have binary values stay binary; base64 is a deliberate exception so that
// dig shows the key and a person can compare it.
func (k KeyPair) PublicBase64() string {
	return base64.StdEncoding.EncodeToString(k.Public[:])
}

// String shows the public key only, so that logging a KeyPair by mistake
// (with %v or %+v) does not leak the private one.
func (k KeyPair) String() string {
	return "X25519 public key " + k.PublicBase64()
}

// The key file
//
// A key file is text: comment lines starting with '#', blank lines, and
// exactly one line holding the 32-octet private key in standard, padded
// base64 (44 characters). The public key is not stored; it is computed from
// the private one, so the two cannot disagree. Text rather than 32 raw
// octets so that an operator can read, back up and compare it with ordinary
// tools, and so that a truncated or wrong file is told apart from a key.
// LoadOrCreateKey writes:
//
//	# btmm-client host key: X25519 private key, base64. Keep it secret.
//	# Public key: <base64> (published as pk= in this host's TXT record)
//	<base64 private key>
//
// The public key in the comment is only for people; it is not read back.

// keyFileMax bounds what parseKeyFile reads: a real key file is about 200
// octets, so anything far larger is not one.
const keyFileMax = 4096

var (
	// ErrInsecureKeyFile is returned (wrapped) for a key file that group or
	// others may read or write, or that is not a regular file.
	ErrInsecureKeyFile = errors.New("insecure key file")
	// ErrMalformedKeyFile is returned (wrapped) for a key file that does not
	// hold exactly one base64 X25519 private key.
	ErrMalformedKeyFile = errors.New("malformed key file")
)

// parseKeyFile reads the text of a key file.
func parseKeyFile(b []byte) (KeyPair, error) {
	if len(b) > keyFileMax {
		return KeyPair{}, fmt.Errorf("%w: longer than %d octets", ErrMalformedKeyFile, keyFileMax)
	}
	var key []byte
	keyLine := 0
	for i, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if key != nil {
			return KeyPair{}, fmt.Errorf("%w: line %d: a second key (the first is on line %d)", ErrMalformedKeyFile, i+1, keyLine)
		}
		// Strict: no bits hidden in the padding, so one key has one
		// spelling. TrimSpace has taken '\r', and Split every '\n', so
		// the decoder cannot skip line breaks inside the key either.
		k, err := base64.StdEncoding.Strict().DecodeString(string(line))
		if err != nil {
			return KeyPair{}, fmt.Errorf("%w: line %d: not base64: %v", ErrMalformedKeyFile, i+1, err)
		}
		if len(k) != 32 {
			return KeyPair{}, fmt.Errorf("%w: line %d: %d octets, an X25519 key has 32", ErrMalformedKeyFile, i+1, len(k))
		}
		key, keyLine = k, i+1
	}
	if key == nil {
		return KeyPair{}, fmt.Errorf("%w: no key in it", ErrMalformedKeyFile)
	}
	return KeyPairFromPrivate([32]byte(key)), nil
}

// formatKeyFile is the text LoadOrCreateKey writes; parseKeyFile reads it
// back to the same key pair.
func formatKeyFile(k KeyPair) []byte {
	return fmt.Appendf(nil, "# btmm-client host key: X25519 private key, base64. Keep it secret.\n"+
		"# Public key: %s (published as pk= in this host's TXT record)\n%s\n",
		k.PublicBase64(), base64.StdEncoding.EncodeToString(k.Private[:]))
}

// LoadOrCreateKey reads the host's key pair from the key file at path, or
// makes a new one there if there is no file.
//
// A new key file is created with mode 0600, in a directory created with
// mode 0700 if it is missing (an existing directory is left as it is). It is
// written to a temporary file in the same directory, synced, and linked into
// place only if path still does not exist, so a reader never sees half a key
// and two clients starting at once end up with the same key; on a file system
// without hard links it is renamed into place instead. The directory is then
// synced; a failure there is ignored, since losing a new key in a crash only
// means making another one, which the next publication announces.
//
// An existing file is never replaced. It must be a regular file that neither
// group nor others may read or write (ErrInsecureKeyFile: chmod 600 it, and
// think about whether the key has leaked), and must hold one key
// (ErrMalformedKeyFile). Both errors name the file.
func LoadOrCreateKey(path string) (KeyPair, error) {
	k, err := loadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	return createKey(path)
}

// loadKey reads an existing key file; its error wraps fs.ErrNotExist when
// there is none.
func loadKey(path string) (KeyPair, error) {
	f, err := os.Open(path)
	if err != nil {
		return KeyPair{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return KeyPair{}, err
	}
	if !fi.Mode().IsRegular() {
		return KeyPair{}, fmt.Errorf("identity: key file %s: %w: not a regular file (%v)", path, ErrInsecureKeyFile, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return KeyPair{}, fmt.Errorf("identity: key file %s: %w: mode %#o lets group or others at it; chmod 600 it", path, ErrInsecureKeyFile, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, keyFileMax+1))
	if err != nil {
		return KeyPair{}, fmt.Errorf("identity: key file %s: %w", path, err)
	}
	k, err := parseKeyFile(b)
	if err != nil {
		return KeyPair{}, fmt.Errorf("identity: key file %s: %w", path, err)
	}
	return k, nil
}

// createKey makes a new key file at path, unless one appears there first.
func createKey(path string) (KeyPair, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return KeyPair{}, fmt.Errorf("identity: creating the key's directory: %w", err)
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("identity: making a key: %w", err)
	}
	k := KeyPairFromPrivate([32]byte(priv.Bytes()))

	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return KeyPair{}, fmt.Errorf("identity: creating the key file: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // a no-op once renamed; removes the extra link otherwise
	_, err = tmp.Write(formatKeyFile(k))
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return KeyPair{}, fmt.Errorf("identity: writing the key file: %w", err)
	}

	switch err := os.Link(tmpName, path); {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		// Another process made the key first: use its key, not ours.
		return loadKey(path)
	default:
		// No hard links here (some FUSE and FAT file systems).
		if err := os.Rename(tmpName, path); err != nil {
			return KeyPair{}, fmt.Errorf("identity: putting the key file in place: %w", err)
		}
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return k, nil
}
