package tsigauth

import (
	"errors"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzCheck feeds arbitrary signed messages to Check and VerifyReply: they
// must never panic, and Check must never accept a MAC it did not verify.
func FuzzCheck(f *testing.F) {
	m := update()
	m.SetTsig(keyName, dns.HmacMD5, 300, time.Now().Unix())
	buf, _, _ := dns.TsigGenerateWithProvider(m, HMAC(secret), "", false)
	f.Add(buf)
	f.Fuzz(func(t *testing.T, raw []byte) {
		VerifyReply(raw, secret, "00")
		r := new(dns.Msg)
		if r.Unpack(raw) != nil || !Signed(r) {
			return
		}
		res := Check(r, keys, time.Now())
		if res.FormErr || res.Error != 0 {
			return
		}
		// Accepted: the MAC must verify over the message as parsed.
		if err := verifyRepacked(r, secret); err != nil && !errors.Is(err, dns.ErrTime) {
			t.Fatalf("Check accepted a message whose MAC does not verify")
		}
	})
}
