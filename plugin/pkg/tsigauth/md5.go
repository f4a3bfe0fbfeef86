package tsigauth

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"time"

	"github.com/miekg/dns"
)

// md5Provider computes HMAC-MD5 TSIGs (RFC 8945 calls it MAY implement,
// MUST NOT use; RFC 6281's clients use it), which miekg/dns dropped.
type md5Provider string

func (p md5Provider) Generate(msg []byte, t *dns.TSIG) ([]byte, error) {
	if dns.CanonicalName(t.Algorithm) != dns.HmacMD5 {
		return nil, dns.ErrKeyAlg
	}
	secret, err := base64.StdEncoding.DecodeString(string(p))
	if err != nil {
		return nil, err
	}
	h := hmac.New(md5.New, secret)
	h.Write(msg)
	return h.Sum(nil), nil
}

func (p md5Provider) Verify(msg []byte, t *dns.TSIG) error {
	want, err := p.Generate(msg, t)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(t.MAC)
	if err != nil {
		return err
	}
	if !hmac.Equal(got, want) {
		return dns.ErrSig
	}
	return nil
}

// verifyMD5 checks an HMAC-MD5 TSIG. The server kept no copy of the bytes
// that arrived, so the request is packed again from its parsed form, once
// with name compression and once without: the MAC then covers exactly the
// records this server acts on, and a request whose sender compressed names
// differently from miekg/dns is refused (BADSIG), never wrongly accepted.
// BIND's nsupdate and Apple's mDNSResponder compress as miekg/dns does.
func verifyMD5(r *dns.Msg, secret string, now time.Time) error {
	err := error(dns.ErrSig)
	for _, compress := range []bool{true, false} {
		m := r.Copy()
		m.Compress = compress
		buf, perr := m.Pack()
		if perr != nil {
			return perr
		}
		// This also checks the time, against the wall clock; a MAC that
		// verifies is then judged below against now.
		err = dns.TsigVerifyWithProvider(buf, md5Provider(secret), "", false)
		if err == nil || errors.Is(err, dns.ErrTime) {
			break
		}
	}
	if err != nil && !errors.Is(err, dns.ErrTime) {
		return err
	}
	t := r.IsTsig()
	skew := now.Unix() - int64(t.TimeSigned)
	if skew < 0 {
		skew = -skew
	}
	if skew > int64(t.Fudge) {
		return dns.ErrTime
	}
	return nil
}
