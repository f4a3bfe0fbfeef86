package tsigupdate

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

const (
	shaName   = "alice.members.example.com."
	shaSecret = "F42STmDnGmFG1jyejcOLBJFIHgcGsAPxrqiDTI9YerQ="
	md5Name   = "bob.members.example.com."
	md5Secret = "c2VjcmV0c2VjcmV0c2VjcmV0MTI="
)

// serveSigned runs a miekg server on 127.0.0.1 that, as CoreDNS's server
// with this project's plugins, has an empty TsigSecret map (it knows none
// of the users' keys) and answers through Check and signingWriter.
func serveSigned(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	keys := tsigauth.Keys(func(name string) []keyfile.Key {
		switch name {
		case shaName:
			return []keyfile.Key{{Name: shaName, Algorithm: dns.HmacSHA256, Secret: shaSecret}}
		case md5Name:
			return []keyfile.Key{{Name: md5Name, Algorithm: dns.HmacMD5, Secret: md5Secret}}
		}
		return nil
	})
	srv := &dns.Server{PacketConn: pc, TsigSecret: map[string]string{},
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			res := tsigauth.Check(r, keys, time.Now())
			m := new(dns.Msg)
			if res.FormErr {
				w.WriteMsg(m.SetRcode(r, dns.RcodeFormatError))
				return
			}
			ww := newSigningWriter(w, r, res, time.Now)
			if res.Error != 0 {
				ww.WriteMsg(m.SetRcode(r, dns.RcodeNotAuth))
				return
			}
			ww.WriteMsg(m.SetReply(r))
		})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func exchangeSigned(t *testing.T, addr, name, alg, sec string, at time.Time) (r *dns.Msg, raw []byte, mac string, err error) {
	t.Helper()
	m := new(dns.Msg).SetQuestion("members.example.com.", dns.TypeSOA)
	m.SetTsig(name, alg, 300, at.Unix())
	generate := func(m *dns.Msg) ([]byte, string, error) { return dns.TsigGenerate(m, sec, "", false) }
	verify := func(raw []byte, mac string) error { return dns.TsigVerify(raw, sec, mac, false) }
	if alg == dns.HmacMD5 {
		generate = func(m *dns.Msg) ([]byte, string, error) {
			return dns.TsigGenerateWithProvider(m, tsigauth.HMAC(sec), "", false)
		}
		verify = func(raw []byte, mac string) error {
			return dns.TsigVerifyWithProvider(raw, tsigauth.HMAC(sec), mac, false)
		}
	}
	buf, mac, err := generate(m)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	c.Write(buf)
	raw = make([]byte, 4096)
	n, err := c.Read(raw)
	if err != nil {
		t.Fatal(err)
	}
	r = new(dns.Msg)
	if err := r.Unpack(raw[:n]); err != nil {
		t.Fatal(err)
	}
	return r, raw[:n], mac, verify(raw[:n], mac)
}

func TestRepliesAreSigned(t *testing.T) {
	addr := serveSigned(t)
	for _, tc := range []struct {
		name, key, alg, secret string
	}{
		{"sha256", shaName, dns.HmacSHA256, shaSecret},
		{"md5", md5Name, dns.HmacMD5, md5Secret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _, _, err := exchangeSigned(t, addr, tc.key, tc.alg, tc.secret, time.Now())
			if err != nil || r.Rcode != dns.RcodeSuccess {
				t.Fatalf("good request: rcode %d, verifying the reply: %v", r.Rcode, err)
			}
			r, raw, mac, err := exchangeSigned(t, addr, tc.key, tc.alg, tc.secret, time.Now().Add(-time.Hour))
			if r.Rcode != dns.RcodeNotAuth || r.IsTsig() == nil || r.IsTsig().Error != dns.RcodeBadTime {
				t.Fatalf("late request: %v", r)
			}
			if !errors.Is(err, dns.ErrAuth) {
				t.Fatalf("miekg/dns verified a NOTAUTH reply (%v): VerifyReply may be needless now", err)
			}
			if err := tsigauth.VerifyReply(raw, tc.secret, mac); err != nil {
				t.Fatalf("BADTIME reply: its MAC does not verify: %v", err)
			}
			if err := tsigauth.VerifyReply(raw, "b3RoZXJzZWNyZXRvdGhlcnNlY3JldA==", mac); !errors.Is(err, dns.ErrSig) {
				t.Fatalf("VerifyReply with another secret: %v, want ErrSig", err)
			}
		})
	}
}
