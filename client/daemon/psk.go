package daemon

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"fmt"

	"github.com/miekg/dns"
)

// pskInfo is the HKDF info string of the tunnel's pre-shared key.
const pskInfo = "btmm tunnel psk v1"

// TunnelPSK derives the tunnel's Noise pre-shared key from the user's TSIG
// key: HKDF-SHA256 (RFC 5869) with the decoded secret as input keying
// material, the user's domain in canonical form (lowercase, fully
// qualified, "alice.members.example.com.") as salt and "btmm tunnel psk v1"
// as info. Every host of the user holds the same key file, so every host
// derives the same PSK, and no one without the user's key can.
//
// secret is the key file's base64 secret.
//
// This is the PSK of hosts not enrolled with a user key only: the server
// holds the TSIG secret too, so it can derive it. Enrolled hosts use
// hostcert.TunnelPSK, public, and authenticate each other by certified
// static keys instead (trust.go).
func TunnelPSK(secret, domain string) ([32]byte, error) {
	var psk [32]byte
	ikm, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		return psk, fmt.Errorf("tunnel PSK: the key's secret: %w", err)
	}
	if len(ikm) == 0 {
		return psk, fmt.Errorf("tunnel PSK: the key's secret is empty")
	}
	k, err := hkdf.Key(sha256.New, ikm, []byte(dns.CanonicalName(domain)), pskInfo, len(psk))
	if err != nil {
		return psk, fmt.Errorf("tunnel PSK: %w", err)
	}
	copy(psk[:], k)
	return psk, nil
}
