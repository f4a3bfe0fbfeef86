package tsigauth

import (
	"encoding/hex"
	"net"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

const (
	keyName = "bob.members.example.com."
	secret  = "c2VjcmV0c2VjcmV0c2VjcmV0MTI="
)

var keys = Keys(func(name string) (keyfile.Key, bool) {
	if name != keyName {
		return keyfile.Key{}, false
	}
	return keyfile.Key{Name: keyName, Algorithm: dns.HmacMD5, Secret: secret}, true
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
		if res := Check(&test.ResponseWriter{}, r, keys, now); res.Error != 0 || res.FormErr {
			t.Errorf("compress=%v: a good HMAC-MD5 signature gave %+v", compress, res)
		}
	}
	r := signMD5(t, update(), false, now)
	r.Ns[1].(*dns.A).A = net.ParseIP("203.0.113.1")
	if res := Check(&test.ResponseWriter{}, r, keys, now); res.Error != dns.RcodeBadSig {
		t.Errorf("a changed record gave %+v, want BADSIG", res)
	}
	r = signMD5(t, update(), false, now.Add(-10*time.Minute))
	if res := Check(&test.ResponseWriter{}, r, keys, now); res.Error != dns.RcodeBadTime {
		t.Errorf("a signature 10 minutes old gave %+v, want BADTIME", res)
	}
	r = signMD5(t, update(), false, now)
	r.Extra[0].(*dns.TSIG).MAC = hex.EncodeToString(make([]byte, 16))
	if res := Check(&test.ResponseWriter{}, r, keys, now); res.Error != dns.RcodeBadSig {
		t.Errorf("a zero MAC gave %+v, want BADSIG", res)
	}
}
