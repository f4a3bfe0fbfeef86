package tsigauth

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"

	"github.com/miekg/dns"
)

// VerifyReply checks the MAC of a signed reply (RFC 8945 §5.3: the request
// MAC, the reply without its TSIG RR, the TSIG variables) and nothing else:
// not the time, which a BADTIME reply carries from the request. miekg/dns's
// TsigVerify refuses every NOTAUTH message, which is just where a client
// needs to know whether a BADTIME answer really came from the server.
// The reply's TSIG RR must be last and uncompressed, as RFC 8945 asks.
func VerifyReply(raw []byte, secret, requestMAC string) error {
	m := new(dns.Msg)
	if err := m.Unpack(raw); err != nil {
		return err
	}
	t := m.IsTsig()
	if t == nil {
		return dns.ErrNoSig
	}
	tlen := dns.Len(t)
	if tlen > len(raw) || len(raw) < 12 {
		return dns.ErrNoSig
	}
	msg := append([]byte(nil), raw[:len(raw)-tlen]...)
	binary.BigEndian.PutUint16(msg[0:], t.OrigId)
	binary.BigEndian.PutUint16(msg[10:], binary.BigEndian.Uint16(msg[10:])-1)

	h := hashOf(dns.CanonicalName(t.Algorithm))
	if h == nil {
		return dns.ErrKeyAlg
	}
	key, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		return err
	}
	reqMAC, err := hex.DecodeString(requestMAC)
	if err != nil {
		return err
	}
	mac := hmac.New(h, key)
	mac.Write(binary.BigEndian.AppendUint16(nil, uint16(len(reqMAC))))
	mac.Write(reqMAC)
	mac.Write(msg)
	// The TSIG variables (RFC 8945 §4.3.3): names in canonical wire form.
	vars := make([]byte, 0, 512)
	vars = appendName(vars, t.Hdr.Name)
	vars = binary.BigEndian.AppendUint16(vars, dns.ClassANY)
	vars = binary.BigEndian.AppendUint32(vars, 0)
	vars = appendName(vars, t.Algorithm)
	vars = append(vars, byte(t.TimeSigned>>40), byte(t.TimeSigned>>32), byte(t.TimeSigned>>24), byte(t.TimeSigned>>16), byte(t.TimeSigned>>8), byte(t.TimeSigned))
	vars = binary.BigEndian.AppendUint16(vars, t.Fudge)
	vars = binary.BigEndian.AppendUint16(vars, t.Error)
	other, err := hex.DecodeString(t.OtherData)
	if err != nil {
		return err
	}
	vars = binary.BigEndian.AppendUint16(vars, uint16(len(other)))
	vars = append(vars, other...)
	mac.Write(vars)
	got, err := hex.DecodeString(t.MAC)
	if err != nil || len(got) == 0 {
		return dns.ErrSig
	}
	if !hmac.Equal(got, mac.Sum(nil)) {
		return dns.ErrSig
	}
	return nil
}

var errName = errors.New("tsig: bad name")

func appendName(b []byte, name string) []byte {
	var buf [256]byte
	n, err := dns.PackDomainName(dns.CanonicalName(name), buf[:], 0, nil, false)
	if err != nil {
		panic(errName) // names in a parsed TSIG RR always pack
	}
	return append(b, buf[:n]...)
}
