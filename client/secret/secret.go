// Package secret derives a user's TSIG key from a password, so that every
// host of the user can make the same key without copying a key file, and the
// server stores only the key, never the password.
//
// # Format btmm-tsig-v1
//
// The key is Argon2id (RFC 9106) of the password with
//
//	salt    = "btmm-tsig-v1:" + user domain + ":" + algorithm
//	time    = 3 passes
//	memory  = 64 MiB (65536 KiB)
//	threads = 4 lanes
//	length  = the algorithm's hash length (32 octets for hmac-sha256)
//
// where the user domain is lowercase and fully qualified
// ("alice.members.example.com.", the key's name) and the algorithm is its
// lowercase BIND name without a trailing dot ("hmac-sha256"). The salt binds
// the key to one user and one algorithm: the same password gives unrelated
// keys to two users, or to one user's hmac-sha256 and hmac-sha512 keys, and
// a precomputed table serves one user only. These parameters, like the salt's
// spelling, are part of the format: changing any of them changes every key,
// so a change must come as a new version ("btmm-tsig-v2") chosen explicitly,
// never as a new default.
//
// The parameters are RFC 9106 §4's second recommended option (64 MiB,
// 3 passes), with 4 lanes: about a fifth of a second on a laptop core, paid
// once per keygen, never per message.
//
// The derived key is only as strong as the password: anyone who sees one
// TSIG-signed message can test guesses against its MAC offline, and Argon2id
// only makes each guess cost 64 MiB and three passes over them. Choose a long
// password, or use a random key (keygen without --password).
package secret

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"
	"golang.org/x/crypto/argon2"
)

// Version names the derivation below, and starts its salt.
const Version = "btmm-tsig-v1"

// Argon2id parameters of Version. Memory is in KiB, as argon2.IDKey takes it.
const (
	Time    = 3
	Memory  = 64 * 1024
	Threads = 4
)

// keySizes maps the algorithms a derived key may be for, by their BIND
// names, to their hash lengths: the key length RFC 8945 §8 recommends and
// that keygen uses for random keys.
var keySizes = map[string]int{
	"hmac-md5":    16,
	"hmac-sha1":   20,
	"hmac-sha224": 28,
	"hmac-sha256": 32,
	"hmac-sha384": 48,
	"hmac-sha512": 64,
}

// Algorithm gives the name an HMAC algorithm has in the salt: lowercase,
// without a trailing dot, with hmac-md5's long wire name
// (hmac-md5.sig-alg.reg.int) shortened to BIND's. ok is false for an unknown
// algorithm.
func Algorithm(name string) (canonical string, ok bool) {
	a := strings.TrimSuffix(strings.ToLower(name), ".")
	if a == "hmac-md5.sig-alg.reg.int" {
		a = "hmac-md5"
	}
	_, ok = keySizes[a]
	return a, ok
}

// Salt is the salt of the derivation for a user domain and an algorithm,
// both in any spelling the DNS treats as the same.
func Salt(domain, algorithm string) (string, error) {
	alg, ok := Algorithm(algorithm)
	if !ok {
		return "", fmt.Errorf("secret: unknown algorithm %q", algorithm)
	}
	name := dns.CanonicalName(domain)
	if _, ok := dns.IsDomainName(name); !ok || name == "." {
		return "", fmt.Errorf("secret: %q is not a user domain", domain)
	}
	return Version + ":" + name + ":" + alg, nil
}

// DeriveTSIG derives the TSIG secret of the user domain (the key's name, such
// as "alice.members.example.com") for algorithm from password, as the package
// comment describes. The result is as long as the algorithm's hash. The same
// password, domain and algorithm give the same key on every host.
func DeriveTSIG(password []byte, domain, algorithm string) ([]byte, error) {
	if len(password) == 0 {
		return nil, errors.New("secret: empty password")
	}
	salt, err := Salt(domain, algorithm)
	if err != nil {
		return nil, err
	}
	alg, _ := Algorithm(algorithm)
	return argon2.IDKey(password, []byte(salt), Time, Memory, Threads, uint32(keySizes[alg])), nil
}
