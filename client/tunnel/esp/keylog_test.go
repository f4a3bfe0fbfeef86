package esp

import (
	"net/netip"
	"testing"
)

func TestAppendKeyLog(t *testing.T) {
	keymat := unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f a0a1a2a3")
	cc, _ := NewSA(Config{SPI: 0x01020304, Suite: ChaCha20Poly1305, Keymat: keymat})
	gcm, _ := NewSA(Config{SPI: 0x1ff, Suite: AES256GCM, Keymat: keymat})
	const key = "0x808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3"
	cases := []struct {
		sa       *SA
		src, dst netip.Addr
		want     string
	}{
		{cc, netip.Addr{}, netip.Addr{},
			`"IPv4","*","*","0x01020304","ChaCha20 with Poly1305 [RFC7634]","` + key + `","NULL",""` + "\n"},
		{gcm, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:198.51.100.7"),
			`"IPv4","192.0.2.1","198.51.100.7","0x000001ff","AES-GCM with 16 octet ICV [RFC4106]","` + key + `","NULL",""` + "\n"},
		{gcm, netip.Addr{}, netip.MustParseAddr("2001:db8::1"),
			`"IPv6","*","2001:db8::1","0x000001ff","AES-GCM with 16 octet ICV [RFC4106]","` + key + `","NULL",""` + "\n"},
	}
	for _, c := range cases {
		if got := string(c.sa.AppendKeyLog(nil, c.src, c.dst)); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}
