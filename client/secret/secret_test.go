package secret

import (
	"bytes"
	"encoding/base64"
	"testing"
)

// The vectors were computed once, independently of this package, with the
// reference Argon2 implementation's command-line tool (Debian package argon2,
// 0~20171227, Argon2 version 0x13):
//
//	printf '%s' 'correct horse battery staple' |
//	  argon2 'btmm-tsig-v1:alice.members.example.com.:hmac-sha256' \
//	    -id -t 3 -m 16 -p 4 -l 32 -r | xxd -r -p | base64
//
// (-m 16 is 2^16 KiB = 64 MiB), and the same with hmac-sha512 and -l 64.
// They pin the format: if one changes, every derived key in the field does.
var vectors = []struct {
	password, domain, algorithm string
	salt                        string
	key                         string // base64
}{
	{
		password:  "correct horse battery staple",
		domain:    "alice.members.example.com",
		algorithm: "hmac-sha256",
		salt:      "btmm-tsig-v1:alice.members.example.com.:hmac-sha256",
		key:       "UDhU78txoPVuHQkxSoAUx0Ik1Yx5CMtMERcIhq0y8ys=",
	},
	{
		password:  "correct horse battery staple",
		domain:    "Alice.Members.Example.COM.",
		algorithm: "HMAC-SHA512.",
		salt:      "btmm-tsig-v1:alice.members.example.com.:hmac-sha512",
		key:       "CBoaNDJCzu/Vx960ZQY56Y7yT6RuN/f4djn0p3RFO6KqjYxNLM/S+rTJ0XGcQ1iuLK2bwGt6djpaP5HCbMXm2g==",
	},
}

func TestDeriveTSIGVectors(t *testing.T) {
	for _, v := range vectors {
		salt, err := Salt(v.domain, v.algorithm)
		if err != nil || salt != v.salt {
			t.Errorf("Salt(%q, %q) = %q, %v; want %q", v.domain, v.algorithm, salt, err, v.salt)
		}
		key, err := DeriveTSIG([]byte(v.password), v.domain, v.algorithm)
		if err != nil {
			t.Fatal(err)
		}
		if got := base64.StdEncoding.EncodeToString(key); got != v.key {
			t.Errorf("DeriveTSIG(%q, %q, %q) = %s, want %s", v.password, v.domain, v.algorithm, got, v.key)
		}
	}
}

func TestDeriveTSIGBinds(t *testing.T) {
	if testing.Short() {
		t.Skip("each derivation takes 64 MiB and a fraction of a second")
	}
	pw := []byte("correct horse battery staple")
	base, _ := DeriveTSIG(pw, "alice.members.example.com", "hmac-sha256")
	for _, other := range [][2]string{
		{"bob.members.example.com", "hmac-sha256"},
		{"alice.members.example.com", "hmac-sha384"},
	} {
		k, err := DeriveTSIG(pw, other[0], other[1])
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(k[:len(base)], base) || bytes.Equal(k[:16], base[:16]) {
			t.Errorf("%v gives the same key as alice's hmac-sha256 key", other)
		}
	}
	md5, _ := DeriveTSIG(pw, "alice.members.example.com", "hmac-md5.sig-alg.reg.int.")
	short, _ := DeriveTSIG(pw, "alice.members.example.com", "hmac-md5")
	if len(md5) != 16 || !bytes.Equal(md5, short) {
		t.Errorf("hmac-md5 by its two names: %x and %x", md5, short)
	}
}

func TestDeriveTSIGRefuses(t *testing.T) {
	for _, tc := range []struct{ password, domain, algorithm string }{
		{"", "alice.members.example.com", "hmac-sha256"},
		{"pw", "alice.members.example.com", "hmac-sha3"},
		{"pw", "alice.members.example.com", "rsa"},
		{"pw", ".", "hmac-sha256"},
		{"pw", "", "hmac-sha256"},
		{"pw", "alice..example.com", "hmac-sha256"},
	} {
		if k, err := DeriveTSIG([]byte(tc.password), tc.domain, tc.algorithm); err == nil {
			t.Errorf("DeriveTSIG(%q, %q, %q) = %x, want an error", tc.password, tc.domain, tc.algorithm, k)
		}
	}
}
