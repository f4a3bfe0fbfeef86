package tsigupdate

import (
	"context"
	"encoding/binary"
	"net"
	"strings"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/endpoint"
	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
)

// UPDATEs are taken on listeners of the plugin's own (package rawdns),
// not on the server block's: CoreDNS's listeners hand plugins a parsed
// message and read 512 octets over UDP, and a TSIG MAC (HMAC-MD5 above
// all, which stock clients use and whose compression a re-encoding does
// not reproduce) can only be checked over the octets that arrived. Here
// every message is read whole, verified over those octets, and answered
// with a reply signed over the octets sent. Queries on these listeners are
// answered by the plugins after this one in the server block (btmm,
// srv-discovery), so that a client can find the zone of a name by SOA
// queries to the update address, as nsupdate does.

// minUDPLimit is the least a UDP request may hold, whatever its EDNS size
// says: room for the UPDATEs of a host with many services.
const minUDPLimit = 4096

// serveRaw answers one message from an update listener.
func (u *TsigUpdate) serveRaw(raw []byte, from *rawdns.Source) {
	remote := net.UDPAddrFromAddrPort(from.Addr)
	if b := u.respond(raw, from.UDP(), remote); b != nil {
		from.Reply(b)
	}
}

// respond returns the reply to the message raw from remote, nil for none.
// udp says the message came in a datagram: then it may hold at most the
// larger of minUDPLimit and its EDNS size, and the reply must fit the
// latter.
func (u *TsigUpdate) respond(raw []byte, udp bool, remote net.Addr) []byte {
	r := new(dns.Msg)
	if err := r.Unpack(raw); err != nil || !whole(raw, r) {
		log.Debugf("unreadable message of %d octets: %v", len(raw), err)
		return formErr(raw)
	}
	if r.Response {
		return nil
	}
	if udp && len(raw) > udpLimit(r) {
		log.Debugf("%d-octet datagram over its %d-octet limit", len(raw), udpLimit(r))
		return formErr(raw)
	}
	now := u.now()
	var sig *dns.TSIG
	var res tsigauth.Result
	if tsigauth.Signed(r) {
		res = tsigauth.CheckRaw(raw, r, u.zone.Keys, now)
		if res.FormErr {
			tsigFailures.WithLabelValues("", "FORMERR").Inc()
			return formErr(raw)
		}
		sig = r.IsTsig()
		r.Extra = r.Extra[:len(r.Extra)-1]
		if res.Error != 0 {
			tsigFailures.WithLabelValues("", dns.RcodeToString[int(res.Error)]).Inc()
			if r.Opcode == dns.OpcodeUpdate {
				updates.WithLabelValues("", dns.RcodeToString[dns.RcodeNotAuth]).Inc()
			}
			return u.pack(r, new(dns.Msg).SetRcode(r, dns.RcodeNotAuth), sig, res, udp)
		}
	}
	var m *dns.Msg
	switch r.Opcode {
	case dns.OpcodeUpdate:
		m = u.serveUpdate(r, res.Key.Name, sig)
		if m == nil {
			return nil // over its key's rate: dropped
		}
		if m.Rcode == dns.RcodeBadTime {
			// A replay (see update): NOTAUTH with TSIG error BADTIME,
			// which says "this signature is not fresh", signed with the
			// server's time.
			tsigFailures.WithLabelValues("", "BADTIME").Inc()
			m.Rcode, res.Error = dns.RcodeNotAuth, dns.RcodeBadTime
		}
	case dns.OpcodeQuery:
		if user, ok := endpointQuestion(r); ok {
			m = u.serveEndpoint(r, user, res.Key.Name, udp, remote)
		} else {
			m = u.serveQuery(r, remote)
		}
	default:
		m = new(dns.Msg).SetRcode(r, dns.RcodeNotImplemented)
	}
	return u.pack(r, m, sig, res, udp)
}

// endpointQuestion reports whether r asks for the server-observed
// endpoint (package endpoint), and of which user.
func endpointQuestion(r *dns.Msg) (string, bool) {
	if len(r.Question) != 1 || r.Question[0].Qtype != dns.TypeSRV {
		return "", false
	}
	return endpoint.User(r.Question[0].Name)
}

// serveUpdate applies the UPDATE r, signed with key ("" if unsigned) and
// sig, and returns the reply, or nil for none.
func (u *TsigUpdate) serveUpdate(r *dns.Msg, key string, sig *dns.TSIG) *dns.Msg {
	rcode := dns.RcodeRefused
	var lease updatelease.Grant
	var err error
	if u.lease != nil {
		lease, err = u.lease.Grant(r)
	}
	switch {
	case key == "":
		log.Debugf("unsigned UPDATE refused")
	case err != nil:
		rcode = dns.RcodeFormatError
	default:
		rcode, err = u.update(u.zone.Store(), key, r, lease, sig)
		if err != nil {
			log.Errorf("UPDATE with key %s: %v", key, err)
		}
	}
	if rcode == rcodeNoReply {
		return nil
	}
	updates.WithLabelValues("", dns.RcodeToString[rcode]).Inc()
	m := new(dns.Msg).SetRcode(r, rcode)
	if rcode == dns.RcodeSuccess && lease.Reply != nil {
		size := uint16(dns.MinMsgSize)
		if o := r.IsEdns0(); o != nil {
			size = o.UDPSize()
		}
		m.SetEdns0(size, false)
		o := m.IsEdns0()
		o.Option = append(o.Option, lease.Reply)
	}
	return m
}

// serveQuery answers the query r with the plugins after this one.
func (u *TsigUpdate) serveQuery(r *dns.Msg, remote net.Addr) *dns.Msg {
	if len(r.Question) != 1 {
		return new(dns.Msg).SetRcode(r, dns.RcodeFormatError)
	}
	if !dns.IsSubDomain(u.zone.Zone(), dns.CanonicalName(r.Question[0].Name)) {
		return new(dns.Msg).SetRcode(r, dns.RcodeRefused)
	}
	w := &capture{remote: remote}
	rcode, err := plugin.NextOrFailure(u.Name(), u.Next, context.Background(), w, r)
	if err != nil {
		log.Errorf("query %s: %v", r.Question[0].Name, err)
	}
	if w.msg == nil || !plugin.ClientWrite(rcode) {
		return new(dns.Msg).SetRcode(r, rcode)
	}
	return w.msg
}

// pack packs the reply m to r, signed if r was (sig, res), cut to fit the
// client's buffer if it goes by UDP (RFC 2181 §9: TC set, whole RRsets).
func (u *TsigUpdate) pack(r, m *dns.Msg, sig *dns.TSIG, res tsigauth.Result, udp bool) []byte {
	state := request.Request{Req: r}
	state.SizeAndDo(m)
	if udp {
		limit := dns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			limit = max(limit, int(o.UDPSize()))
		}
		if sig != nil {
			limit -= tsigLen(sig)
		}
		m.Truncate(limit)
	}
	var b []byte
	var err error
	if sig != nil {
		b, err = tsigauth.PackReply(m, sig, res, u.now())
	} else {
		b, err = m.Pack()
	}
	if err != nil {
		log.Errorf("packing a reply: %v", err)
		return nil
	}
	return b
}

// tsigLen is the most octets the TSIG RR of a reply to a request signed
// with sig takes: its names, a MAC of the longest hash, and six octets of
// other data (BADTIME).
func tsigLen(sig *dns.TSIG) int {
	return dns.Len(&dns.TSIG{
		Hdr: dns.RR_Header{Name: sig.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY}, Algorithm: sig.Algorithm,
		MACSize: 64, MAC: strings.Repeat("00", 64), OtherLen: 6, OtherData: strings.Repeat("00", 6),
	})
}

// whole reports whether r holds as many records as the header of raw, the
// octets it was parsed from, says: the DNS library takes a message that
// ends after a section without complaint.
func whole(raw []byte, r *dns.Msg) bool {
	counts := []int{len(r.Question), len(r.Answer), len(r.Ns), len(r.Extra)}
	for i, n := range counts {
		if int(binary.BigEndian.Uint16(raw[4+2*i:])) != n {
			return false
		}
	}
	return true
}

// udpLimit is the most octets a UDP request r may hold.
func udpLimit(r *dns.Msg) int {
	if o := r.IsEdns0(); o != nil {
		return max(minUDPLimit, int(o.UDPSize()))
	}
	return minUDPLimit
}

// formErr is the FORMERR reply to a message that cannot be read or
// taken: its header with QR set, no records (RFC 1035 §4.1.1). Nothing
// answers fewer than 12 octets, or a response.
func formErr(raw []byte) []byte {
	if len(raw) < 12 || raw[2]&0x80 != 0 {
		return nil
	}
	b := make([]byte, 12)
	copy(b, raw[:4])
	b[2] = raw[2]&0x78 | 0x80   // QR, the request's opcode, no AA/TC/RD
	b[3] = dns.RcodeFormatError // RA 0, Z 0; the counts stay 0
	return b
}

// capture is the ResponseWriter of the queries passed down the chain: it
// keeps the reply, which the listener signs, cuts and sends.
type capture struct {
	remote net.Addr
	msg    *dns.Msg
}

func (c *capture) LocalAddr() net.Addr       { return &net.UDPAddr{} }
func (c *capture) RemoteAddr() net.Addr      { return c.remote }
func (c *capture) WriteMsg(m *dns.Msg) error { c.msg = m; return nil }
func (c *capture) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	c.msg = m
	return len(b), nil
}
func (c *capture) Close() error        { return nil }
func (c *capture) TsigStatus() error   { return nil }
func (c *capture) TsigTimersOnly(bool) {}
func (c *capture) Hijack()             {}
