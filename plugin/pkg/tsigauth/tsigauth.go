// Package tsigauth is TSIG (RFC 8945) as this project's server and client
// both need it: checking a signed request, answering the failures as the
// RFC asks, signing replies, and verifying the signed replies that
// miekg/dns will not (NOTAUTH ones). It imports only miekg/dns and the
// standard library, so the client links it without any of CoreDNS.
//
// A request read by a plugin's own listener is checked over the octets
// that arrived (CheckRaw), and its reply signed over the octets sent
// (PackReply). A request that came through CoreDNS's own server has no
// octets left, only the parsed message: it is checked over the message
// packed again (Check), never against the server's TsigSecret map, which
// holds neither algorithms nor the users added while the server runs, and
// whose verifier no longer computes HMAC-MD5, which RFC 6281 clients use.
package tsigauth

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// Keys returns the keys that may sign as name (lowercase, fully
// qualified): none for a name it does not know, one, or two while a key is
// being rotated, the new one first.
type Keys func(name string) []keyfile.Key

// Result is the outcome of Check for a signed request.
type Result struct {
	// Key is the key the request named; only trusted if Error is zero.
	Key keyfile.Key
	// Error is the TSIG error: 0, dns.RcodeBadKey, dns.RcodeBadSig or
	// dns.RcodeBadTime.
	Error uint16
	// FormErr is set for a malformed TSIG, answered with a plain FORMERR.
	FormErr bool
}

// ErrMalformed is what Check says of a TSIG RR that is not the last RR of
// the additional section, or not the only one.
var ErrMalformed = errors.New("tsig: TSIG RR is not the single last record")

// Signed reports whether r carries a TSIG RR anywhere in its additional
// section (and so must be checked).
func Signed(r *dns.Msg) bool {
	for _, rr := range r.Extra {
		if rr.Header().Rrtype == dns.TypeTSIG {
			return true
		}
	}
	return false
}

// Check verifies the TSIG of r, which must be Signed, over r packed again
// (see verifyRepacked).
func Check(r *dns.Msg, keys Keys, now time.Time) Result {
	return check(r, keys, now, func(k keyfile.Key) error { return verifyRepacked(r, k.Secret) })
}

// CheckRaw verifies the TSIG of r, which must be Signed and parsed from
// raw, for a server that reads its own messages and so has the bytes as
// they arrived (the update and LLQ listeners).
func CheckRaw(raw []byte, r *dns.Msg, keys Keys, now time.Time) Result {
	return check(r, keys, now, func(k keyfile.Key) error {
		return dns.TsigVerifyWithProvider(append([]byte(nil), raw...), HMAC(k.Secret), "", false)
	})
}

// check does the checks that come before the MAC's (the TSIG RR's place,
// the key and its algorithm, the MAC's size), then verifies the MAC with
// each of the name's keys of the request's algorithm until one holds, and
// judges the time by now and MaxFudge, not by the library's clock.
func check(r *dns.Msg, keys Keys, now time.Time, verify func(keyfile.Key) error) Result {
	for i, rr := range r.Extra {
		if rr.Header().Rrtype == dns.TypeTSIG && i != len(r.Extra)-1 {
			return Result{FormErr: true}
		}
	}
	t := r.IsTsig()
	if t == nil {
		return Result{FormErr: true}
	}
	alg := dns.CanonicalName(t.Algorithm)
	var cands []keyfile.Key
	for _, k := range keys(dns.CanonicalName(t.Hdr.Name)) {
		if k.Algorithm == alg {
			cands = append(cands, k)
		}
	}
	if len(cands) == 0 {
		return Result{Key: keyfile.Key{Name: t.Hdr.Name, Algorithm: t.Algorithm}, Error: dns.RcodeBadKey}
	}
	// RFC 8945 §5.2.2: a MAC longer than the hash, or shorter than half of
	// it (and than 10 octets), is malformed.
	if size, hashLen := int(t.MACSize), MACLen(alg); size > hashLen || size < max(10, hashLen/2) {
		return Result{FormErr: true}
	}
	var status error
	for _, k := range cands {
		status = verify(k)
		if status == nil || errors.Is(status, dns.ErrTime) {
			// The MAC is good.
			return withStatus(Result{Key: k}, checkTime(t, now))
		}
	}
	return withStatus(Result{Key: cands[0]}, status)
}

func withStatus(res Result, status error) Result {
	switch {
	case status == nil:
	case errors.Is(status, dns.ErrTime):
		res.Error = dns.RcodeBadTime
	case errors.Is(status, dns.ErrSecret):
		res.Error = dns.RcodeBadKey
	default:
		res.Error = dns.RcodeBadSig
	}
	return res
}

// MaxFudge is the most clock difference a request may claim in its fudge
// field; a larger fudge is read as this (RFC 8945 §10 recommends 300 s).
// It bounds how long a signed message stays acceptable, and so how long a
// server must remember it to refuse replays.
const MaxFudge = 300

// checkTime judges the time signed by now and the fudge, at most MaxFudge.
func checkTime(t *dns.TSIG, now time.Time) error {
	skew := now.Unix() - int64(t.TimeSigned)
	if skew < 0 {
		skew = -skew
	}
	if skew > int64(min(t.Fudge, MaxFudge)) {
		return dns.ErrTime
	}
	return nil
}

// MACLen returns the length of alg's hash, the full MAC, in octets: also
// the length of a new random key for it. 0 for an unknown algorithm.
func MACLen(alg string) int {
	switch alg {
	case dns.HmacMD5:
		return 16
	case dns.HmacSHA1:
		return 20
	case dns.HmacSHA224:
		return 28
	case dns.HmacSHA256:
		return 32
	case dns.HmacSHA384:
		return 48
	case dns.HmacSHA512:
		return 64
	}
	return 0
}

// ReplyTSIG returns the TSIG RR, not yet signed, for a reply with message ID
// id to a request that carried reqSig, whose check gave tsigError. Pack the
// reply with it last through dns.TsigGenerateWithProvider and the request's
// MAC: that signs it, except for BADKEY and BADSIG, which RFC 8945 §5.3.2
// wants unsigned.
func ReplyTSIG(reqSig *dns.TSIG, tsigError uint16, id uint16, now time.Time) *dns.TSIG {
	sig := &dns.TSIG{
		// Fqdn: a root name parses as "", which would pack as nothing.
		Hdr:       dns.RR_Header{Name: dns.Fqdn(reqSig.Hdr.Name), Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: dns.Fqdn(reqSig.Algorithm),
		Fudge:     reqSig.Fudge,
		OrigId:    id,
		Error:     tsigError,
	}
	if tsigError == dns.RcodeBadTime {
		// RFC 8945 §5.2.3: the client's time signed, and ours in other data.
		sig.TimeSigned = reqSig.TimeSigned
		b := binary.BigEndian.AppendUint64(nil, uint64(now.Unix()))
		sig.OtherData = hex.EncodeToString(b[2:])
		sig.OtherLen = 6
	} else {
		sig.TimeSigned = uint64(now.Unix())
	}
	return sig
}

// PackReply packs m, the reply to a request that carried reqSig and was
// judged res, with its TSIG RR last: signed over the octets returned with
// the request's MAC, or, for BADKEY and BADSIG, unsigned as RFC 8945
// §5.3.2 asks. It is for servers that send the bytes themselves.
func PackReply(m *dns.Msg, reqSig *dns.TSIG, res Result, now time.Time) ([]byte, error) {
	m.Extra = append(m.Extra, ReplyTSIG(reqSig, res.Error, m.Id, now))
	if res.Error == dns.RcodeBadKey || res.Error == dns.RcodeBadSig {
		return m.Pack()
	}
	buf, _, err := dns.TsigGenerateWithProvider(m, HMAC(res.Key.Secret), reqSig.MAC, false)
	return buf, err
}
