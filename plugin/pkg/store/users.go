package store

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// User is one user of the zone: a domain below the apex (the user's
// domain, alice.members.example.com.) and the TSIG key named after it, with
// which the user's hosts sign. While a key is being rotated, the key it
// replaces is accepted too, until Until.
type User struct {
	Key keyfile.Key // Key.Name is the user's domain
	// Previous is the key the current one replaced, accepted until Until;
	// nil when no rotation is in its overlap.
	Previous *keyfile.Key
	Until    time.Time
}

// Name returns the user's domain.
func (u User) Name() string { return u.Key.Name }

// Keys returns the keys the user may sign with at now: the current key,
// then the previous one while the overlap lasts.
func (u User) Keys(now time.Time) []keyfile.Key {
	if u.Previous != nil && now.Before(u.Until) {
		return []keyfile.Key{u.Key, *u.Previous}
	}
	return []keyfile.Key{u.Key}
}

// Users is the users of a zone, kept in its store, so that every server
// on the store sees a change at once and none needs a reload. Both
// engines implement it beside Store.
//
// A change is published on the store's change feed as an Event whose
// Users names the user, so that holders of a user's sessions (LLQs) can
// end them when its key is revoked.
type Users interface {
	// User returns the user whose domain is name (lowercase, fully
	// qualified).
	User(name string) (User, bool, error)
	// PutUser adds u, or replaces the user of the same name. It is durable
	// when it returns.
	PutUser(u User) error
	// PutUsers adds or replaces many users at once, as PutUser does each
	// (one transaction for the file store; for etcd, one per 128): for
	// imports.
	PutUsers(us []User) error
	// DeleteUser removes the user named name, and reports whether there
	// was one. It is durable when it returns.
	DeleteUser(name string) (bool, error)
	// ForEachUser calls fn with each user, until fn returns false.
	ForEachUser(fn func(User) bool) error
}

// ErrUserName is what EncodeUser says of a user whose name is not a name.
var ErrUserName = errors.New("store: user name is not a domain name")

// User values, as both engines store them (under a key of the user's
// name):
//
//	version 1 (u8)
//	algorithm (u8, algorithmCodes)  secret length (u8)  secret (raw octets)
//	then, only during a rotation's overlap:
//	algorithm (u8)  secret length (u8)  secret  until (i64, unix seconds)
//
// The secret is kept decoded (a 256-bit key takes 32 octets, not 44): a
// million users fit in a few tens of megabytes.
const userFormat = 1

var algorithmCodes = []string{"", dns.HmacMD5, dns.HmacSHA1, dns.HmacSHA224, dns.HmacSHA256, dns.HmacSHA384, dns.HmacSHA512}

func algorithmCode(alg string) (byte, bool) {
	for i, a := range algorithmCodes {
		if i > 0 && a == alg {
			return byte(i), true
		}
	}
	return 0, false
}

// EncodeUser returns u's stored value.
func EncodeUser(u User) ([]byte, error) {
	if _, ok := dns.IsDomainName(u.Key.Name); !ok || u.Key.Name != dns.CanonicalName(u.Key.Name) {
		return nil, ErrUserName
	}
	b := []byte{userFormat}
	b, err := appendKey(b, u.Key)
	if err != nil {
		return nil, err
	}
	if u.Previous != nil {
		if b, err = appendKey(b, *u.Previous); err != nil {
			return nil, err
		}
		b = binary.BigEndian.AppendUint64(b, uint64(u.Until.Unix()))
	}
	return b, nil
}

func appendKey(b []byte, k keyfile.Key) ([]byte, error) {
	code, ok := algorithmCode(k.Algorithm)
	if !ok {
		return nil, fmt.Errorf("store: key %s: unknown algorithm %q", k.Name, k.Algorithm)
	}
	secret, err := base64.StdEncoding.DecodeString(k.Secret)
	if err != nil || len(secret) == 0 || len(secret) > 255 {
		return nil, fmt.Errorf("store: key %s: the secret must be 1 to 255 octets of base64", k.Name)
	}
	b = append(b, code, byte(len(secret)))
	return append(b, secret...), nil
}

// DecodeUser parses the stored value v of the user named name.
func DecodeUser(name string, v []byte) (User, error) {
	bad := fmt.Errorf("store: user %s: malformed value of %d octets", name, len(v))
	if len(v) < 1 || v[0] != userFormat {
		return User{}, bad
	}
	k, rest, ok := readKey(name, v[1:])
	if !ok {
		return User{}, bad
	}
	u := User{Key: k}
	if len(rest) == 0 {
		return u, nil
	}
	prev, rest, ok := readKey(name, rest)
	if !ok || len(rest) != 8 {
		return User{}, bad
	}
	u.Previous = &prev
	u.Until = time.Unix(int64(binary.BigEndian.Uint64(rest)), 0)
	return u, nil
}

func readKey(name string, b []byte) (keyfile.Key, []byte, bool) {
	if len(b) < 2 || b[0] == 0 || int(b[0]) >= len(algorithmCodes) || b[1] == 0 || len(b) < 2+int(b[1]) {
		return keyfile.Key{}, nil, false
	}
	n := 2 + int(b[1])
	k := keyfile.Key{Name: name, Algorithm: algorithmCodes[b[0]], Secret: base64.StdEncoding.EncodeToString(b[2:n])}
	return k, b[n:], true
}
