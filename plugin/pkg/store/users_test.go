package store

import (
	"bytes"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

func TestUserRoundTrip(t *testing.T) {
	key := keyfile.Key{Name: "alice.members.example.com.", Algorithm: dns.HmacSHA256, Secret: "c2VjcmV0IHRoYXQgaXMgbG9uZyBlbm91Z2ggZm9yIGEga2V5IQ=="}
	old := keyfile.Key{Name: key.Name, Algorithm: dns.HmacMD5, Secret: "b2xkIHNlY3JldA=="}
	for _, u := range []User{
		{Key: key},
		{Key: key, Previous: &old, Until: time.Unix(1_900_000_000, 0)},
	} {
		v, err := EncodeUser(u)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeUser(key.Name, v)
		if err != nil {
			t.Fatal(err)
		}
		if got.Key != u.Key || (u.Previous == nil) != (got.Previous == nil) || (u.Previous != nil && *got.Previous != *u.Previous) || !got.Until.Equal(u.Until) {
			t.Errorf("round trip of %+v gave %+v", u, got)
		}
	}
	// A 256-bit secret is stored in 32 octets, not in its 44 of base64.
	if v, _ := EncodeUser(User{Key: key}); len(v) != 3+37 {
		t.Errorf("stored value is %d octets, want %d", len(v), 3+37)
	}
}

func TestEncodeUserRefuses(t *testing.T) {
	for _, k := range []keyfile.Key{
		{Name: "Alice.members.example.com.", Algorithm: dns.HmacSHA256, Secret: "c2VjcmV0"}, // not lowercase
		{Name: "alice.members.example.com.", Algorithm: "hmac-sha3.", Secret: "c2VjcmV0"},
		{Name: "alice.members.example.com.", Algorithm: dns.HmacSHA256, Secret: "not base64!"},
		{Name: "alice.members.example.com.", Algorithm: dns.HmacSHA256, Secret: ""},
	} {
		if _, err := EncodeUser(User{Key: k}); err == nil {
			t.Errorf("EncodeUser accepted %+v", k)
		}
	}
}

// FuzzDecodeUser checks that any stored value either fails to decode or
// decodes to a user that encodes back to the same octets.
func FuzzDecodeUser(f *testing.F) {
	key := keyfile.Key{Name: "a.example.", Algorithm: dns.HmacSHA256, Secret: "c2VjcmV0"}
	v, _ := EncodeUser(User{Key: key})
	f.Add(v)
	v, _ = EncodeUser(User{Key: key, Previous: &key, Until: time.Unix(1, 0)})
	f.Add(v)
	f.Add([]byte{1, 7, 1})
	f.Fuzz(func(t *testing.T, v []byte) {
		u, err := DecodeUser("a.example.", v)
		if err != nil {
			return
		}
		again, err := EncodeUser(u)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", u, err)
		}
		if !bytes.Equal(again, v) {
			t.Fatalf("decode then encode: %x became %x", v, again)
		}
	})
}
