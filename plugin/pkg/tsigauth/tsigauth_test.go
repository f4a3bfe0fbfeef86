package tsigauth

import (
	"encoding/hex"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

const (
	keyName = "bob.members.example.com."
	secret  = "c2VjcmV0c2VjcmV0c2VjcmV0MTI="
)

var keys = Keys(func(name string) []keyfile.Key {
	if name != keyName {
		return nil
	}
	return []keyfile.Key{{Name: keyName, Algorithm: dns.HmacMD5, Secret: secret}}
})

// signMD5 signs m as a client would and returns what the server parses.
func signMD5(t *testing.T, m *dns.Msg, compress bool, at time.Time) *dns.Msg {
	t.Helper()
	m.Compress = compress
	m.SetTsig(keyName, dns.HmacMD5, 300, at.Unix())
	buf, _, err := dns.TsigGenerateWithProvider(m, HMAC(secret), "", false)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf); err != nil {
		t.Fatal(err)
	}
	return r
}

func update() *dns.Msg {
	m := new(dns.Msg).SetUpdate("members.example.com.")
	srv, _ := dns.NewRR("_autotunnel._udp.desk.bob.members.example.com. 60 IN SRV 0 0 4500 AutoTunnel-1.bob.members.example.com.")
	a, _ := dns.NewRR("AutoTunnel-1.bob.members.example.com. 60 IN A 198.51.100.7")
	m.Insert([]dns.RR{srv, a})
	return m
}

func TestMD5(t *testing.T) {
	now := time.Now()
	for _, compress := range []bool{false, true} {
		r := signMD5(t, update(), compress, now)
		if res := Check(r, keys, now); res.Error != 0 || res.FormErr {
			t.Errorf("compress=%v: a good HMAC-MD5 signature gave %+v", compress, res)
		}
	}
	r := signMD5(t, update(), false, now)
	r.Ns[1].(*dns.A).A = net.ParseIP("203.0.113.1")
	if res := Check(r, keys, now); res.Error != dns.RcodeBadSig {
		t.Errorf("a changed record gave %+v, want BADSIG", res)
	}
	r = signMD5(t, update(), false, now.Add(-10*time.Minute))
	if res := Check(r, keys, now); res.Error != dns.RcodeBadTime {
		t.Errorf("a signature 10 minutes old gave %+v, want BADTIME", res)
	}
	r = signMD5(t, update(), false, now)
	r.Extra[0].(*dns.TSIG).MAC = hex.EncodeToString(make([]byte, 16))
	if res := Check(r, keys, now); res.Error != dns.RcodeBadSig {
		t.Errorf("a zero MAC gave %+v, want BADSIG", res)
	}
}

// TestRotation: while a key is rotated both the new and the previous
// secret verify, and the result names the one that did, which signs the
// reply; a name with no key, or a key of another algorithm, is BADKEY.
func TestRotation(t *testing.T) {
	now := time.Now()
	newKey := keyfile.Key{Name: keyName, Algorithm: dns.HmacMD5, Secret: "bmV3c2VjcmV0bmV3c2VjcmV0MTI="}
	old := keyfile.Key{Name: keyName, Algorithm: dns.HmacMD5, Secret: secret}
	rotating := Keys(func(name string) []keyfile.Key {
		if name != keyName {
			return nil
		}
		return []keyfile.Key{newKey, old}
	})
	r := signMD5(t, update(), true, now) // signed with the old secret
	if res := Check(r, rotating, now); res.Error != 0 || res.Key != old {
		t.Errorf("the previous key during the overlap gave %+v", res)
	}
	if res := Check(r, Keys(func(string) []keyfile.Key { return []keyfile.Key{newKey} }), now); res.Error != dns.RcodeBadSig {
		t.Errorf("the previous key after the overlap gave %+v, want BADSIG", res)
	}
	if res := Check(r, Keys(func(string) []keyfile.Key { return nil }), now); res.Error != dns.RcodeBadKey {
		t.Errorf("a revoked key gave %+v, want BADKEY", res)
	}
	sha := keyfile.Key{Name: keyName, Algorithm: dns.HmacSHA256, Secret: secret}
	if res := Check(r, Keys(func(string) []keyfile.Key { return []keyfile.Key{sha} }), now); res.Error != dns.RcodeBadKey {
		t.Errorf("a key of another algorithm gave %+v, want BADKEY", res)
	}
}
