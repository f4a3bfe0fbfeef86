package tsigupdate

import (
	"time"

	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

// signingWriter signs every reply with the request's key: a verified request's
// replies with a MAC, a failed one's with the TSIG error and, as RFC 8945
// §5.3.2 says, with a MAC only for BADTIME. It signs and sends the octets
// itself: the DNS server's own signing knows only its TsigSecret map,
// which holds none of the users' keys (see package btmm).
//
// It must wrap the writer before anything else writes to it: it takes the
// TSIG RR off the request, so that the handlers after it see none.
type signingWriter struct {
	dns.ResponseWriter
	req    *dns.Msg  // the request without its TSIG RR
	reqSig *dns.TSIG // the request's TSIG RR
	res    tsigauth.Result
	now    func() time.Time
}

// newSigningWriter strips r's TSIG RR and returns a writer that signs the replies
// to r with res's key and error.
func newSigningWriter(w dns.ResponseWriter, r *dns.Msg, res tsigauth.Result, now func() time.Time) *signingWriter {
	sig := r.IsTsig()
	r.Extra = r.Extra[:len(r.Extra)-1]
	return &signingWriter{ResponseWriter: w, req: r, reqSig: sig, res: res, now: now}
}

// WriteMsg implements dns.ResponseWriter.
func (w *signingWriter) WriteMsg(m *dns.Msg) error {
	if m.IsTsig() != nil {
		return w.ResponseWriter.WriteMsg(m)
	}
	// CoreDNS's scrub would append the request's OPT after our TSIG, which
	// must be last: put the OPT in now, and fit the reply to the request's
	// size before the TSIG RR goes on.
	state := request.Request{Req: w.req, W: w.ResponseWriter}
	state.SizeAndDo(m)
	state.Scrub(m)
	buf, err := tsigauth.PackReply(m, w.reqSig, w.res, w.now())
	if err != nil {
		return err
	}
	_, err = w.ResponseWriter.Write(buf)
	return err
}
