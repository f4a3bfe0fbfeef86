package identity

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/curve25519"
)

func TestKeyPairFromPrivateRFC7748(t *testing.T) {
	// RFC 7748 §6.1: Alice's private and public keys.
	priv, _ := hex.DecodeString("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	pub, _ := hex.DecodeString("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	k := KeyPairFromPrivate([32]byte(priv))
	if !bytes.Equal(k.Public[:], pub) {
		t.Fatalf("public key %x, want %x", k.Public, pub)
	}
	if got := k.PublicBase64(); got != base64.StdEncoding.EncodeToString(pub) || len(got) != 44 {
		t.Errorf("PublicBase64 = %q", got)
	}
	if s := k.String(); strings.Contains(s, base64.StdEncoding.EncodeToString(priv)) || strings.Contains(s, hex.EncodeToString(priv)) {
		t.Errorf("String() shows the private key: %s", s)
	}
}

// checkPair tests the public key against X25519(private, base point) as
// another implementation (x/crypto's curve25519) computes it.
func checkPair(t *testing.T, k KeyPair) {
	t.Helper()
	pub, err := curve25519.X25519(k.Private[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub, k.Public[:]) {
		t.Fatalf("public key %x does not match the private key (want %x)", k.Public, pub)
	}
	if k.Private == [32]byte{} {
		t.Fatal("all-zero private key")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "btmm-client")
	path := filepath.Join(dir, "x25519.key")

	k, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	checkPair(t, k)
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		// MkdirAll and CreateTemp apply the umask, which can only take
		// bits away; none may be left for group and others.
		if fi.Mode().Perm()&^want != 0 || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	text, _ := os.ReadFile(path)
	if !bytes.Contains(text, []byte(base64.StdEncoding.EncodeToString(k.Private[:])+"\n")) {
		t.Errorf("key file does not hold the private key in base64:\n%s", text)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}

	again, err := LoadOrCreateKey(path)
	if err != nil || again != k {
		t.Fatalf("reload gave %v, %v; want the same key %v", again, err, k)
	}

	// Another file in the same, existing directory is another key.
	other, err := LoadOrCreateKey(filepath.Join(dir, "other.key"))
	if err != nil || other == k {
		t.Fatalf("second key file: %v, %v", other, err)
	}
}

func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x25519.key")
	keys := make([]KeyPair, 8)
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() { keys[i], errs[i] = LoadOrCreateKey(path) })
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil || keys[i] != keys[0] {
			t.Fatalf("starter %d got %v, %v; starter 0 got %v", i, keys[i], errs[i], keys[0])
		}
	}
}

func TestLoadOrCreateKeyRefuses(t *testing.T) {
	good := formatKeyFile(KeyPairFromPrivate([32]byte{1, 2, 3}))
	for _, tc := range []struct {
		name string
		data []byte
		mode os.FileMode
		want error
	}{
		{"group-readable", good, 0o640, ErrInsecureKeyFile},
		{"world-readable", good, 0o604, ErrInsecureKeyFile},
		{"group-writable", good, 0o620, ErrInsecureKeyFile},
		{"empty", nil, 0o600, ErrMalformedKeyFile},
		{"corrupt", []byte("not a key\n"), 0o600, ErrMalformedKeyFile},
		{"truncated", good[:len(good)-10], 0o600, ErrMalformedKeyFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x25519.key")
			if err := os.WriteFile(path, tc.data, tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tc.mode) // past the umask
			_, err := LoadOrCreateKey(path)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v; want %v naming %s", err, tc.want, path)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, tc.data) {
				t.Error("the file was replaced")
			}
		})
	}

	t.Run("directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "x25519.key")
		os.Mkdir(path, 0o700)
		if _, err := LoadOrCreateKey(path); !errors.Is(err, ErrInsecureKeyFile) {
			t.Fatalf("error %v; want ErrInsecureKeyFile", err)
		}
	})
	t.Run("directory cannot be made", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, nil, 0o600)
		if _, err := LoadOrCreateKey(filepath.Join(file, "x25519.key")); err == nil {
			t.Fatal("made a key under a regular file")
		}
	})
}

func TestParseKeyFile(t *testing.T) {
	k := KeyPairFromPrivate([32]byte{9, 8, 7})
	b64 := base64.StdEncoding.EncodeToString(k.Private[:])
	for _, s := range []string{
		string(formatKeyFile(k)),
		b64,
		"\n\n  " + b64 + "  \r\n# trailing comment\n",
		"# comment\r\n" + b64 + "\r\n",
	} {
		got, err := parseKeyFile([]byte(s))
		if err != nil || got != k {
			t.Errorf("parseKeyFile(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{
		"",
		"# only a comment\n",
		b64 + "\n" + b64 + "\n",           // two keys
		b64[:40] + "\n" + b64[40:] + "\n", // split over lines
		base64.StdEncoding.EncodeToString(make([]byte, 31)),
		base64.StdEncoding.EncodeToString(make([]byte, 33)),
		base64.RawStdEncoding.EncodeToString(k.Private[:]), // no padding
		b64[:42] + "B=", // bits in the padding
		b64 + " trailing",
		strings.Repeat("#", keyFileMax) + "\n" + b64,
	} {
		if got, err := parseKeyFile([]byte(s)); !errors.Is(err, ErrMalformedKeyFile) {
			t.Errorf("parseKeyFile(%q) = %v, %v; want ErrMalformedKeyFile", s, got, err)
		}
	}
}

func FuzzParseKeyFile(f *testing.F) {
	k := KeyPairFromPrivate([32]byte{1})
	f.Add(formatKeyFile(k))
	f.Add([]byte(base64.StdEncoding.EncodeToString(k.Private[:])))
	f.Add([]byte("# x\n\n" + base64.StdEncoding.EncodeToString(k.Private[:]) + "\r\n"))
	f.Add([]byte("AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseKeyFile(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedKeyFile) {
				t.Fatalf("error %v is not ErrMalformedKeyFile", err)
			}
			return
		}
		if k != KeyPairFromPrivate(k.Private) {
			t.Fatal("public key does not match the private key")
		}
		again, err := parseKeyFile(formatKeyFile(k))
		if err != nil || again != k {
			t.Fatalf("formatKeyFile does not read back: %v, %v", again, err)
		}
	})
}
