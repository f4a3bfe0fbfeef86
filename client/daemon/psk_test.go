package daemon

import (
	"encoding/hex"
	"testing"
)

// The vector was computed with HMAC-SHA256 by hand, following RFC 5869:
// PRK = HMAC(salt, IKM), OKM = HMAC(PRK, info || 0x01).
func TestTunnelPSK(t *testing.T) {
	const secret = "c2VjcmV0LW9mLWFsaWNlLWZvci10ZXN0cy1vbmx5IQ==" // "secret-of-alice-for-tests-only!"
	const want = "8dac9677fa33204346d036542a8ea1769ce8f6b1449dfdfad11a1987178e07f3"
	for _, domain := range []string{"alice.members.example.com.", "Alice.Members.Example.com"} {
		psk, err := TunnelPSK(secret, domain)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(psk[:]); got != want {
			t.Errorf("TunnelPSK(%q) = %s, want %s", domain, got, want)
		}
	}
	other, _ := TunnelPSK(secret, "bob.members.example.com.")
	if hex.EncodeToString(other[:]) == want {
		t.Error("another user's domain gives the same PSK")
	}
	if _, err := TunnelPSK("not base64!", "alice.members.example.com."); err == nil {
		t.Error("a bad secret gives a PSK")
	}
	if _, err := TunnelPSK("", "alice.members.example.com."); err == nil {
		t.Error("an empty secret gives a PSK")
	}
}
