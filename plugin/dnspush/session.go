package dnspush

import (
	"fmt"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/dso"
	"github.com/openbtmm/btmm/plugin/pkg/members"
	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

// retryDelay is what a refused SUBSCRIBE tells its client to wait (RFC
// 8765 §6.2.2 suggests five minutes), in milliseconds.
const retryDelay = 5 * 60 * 1000

// maxPush bounds the change records of one PUSH message, so that it stays
// well under the 64 KiB a TCP message may hold.
const maxPush = 16 << 10

// session is one connection's DSO state. Its own mutex orders what is
// written to the client: a SUBSCRIBE's response and initial PUSH go out
// before any PUSH of a later change. Lock order: ss.mu, then srv.mu.
type session struct {
	srv  *Server
	conn *rawdns.Conn

	mu sync.Mutex // held while writing, and for what follows
	// key is the TSIG key the client proved with a signed query on the
	// session, and tag which of its secrets; "" until then.
	key         string
	tag         uint32
	established bool
	idle        *time.Timer // the inactivity timer, while no subscription is live

	// subs are the live subscriptions by SUBSCRIBE message ID; guarded by
	// srv.mu, as is the index they are in.
	subs map[uint16]*subscription
}

func newSession(s *Server, rc *rawdns.Conn) *session {
	ss := &session{srv: s, conn: rc, subs: make(map[uint16]*subscription)}
	ss.armIdle()
	return ss
}

// identity returns the key the session proved, and its secret's tag.
func (ss *session) identity() (string, uint32) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.key, ss.tag
}

// owner is what a subscription made now counts against: the session's
// key, or the session itself while unsigned; ss.mu is held.
func (ss *session) owner() string {
	if ss.key != "" {
		return ss.key
	}
	return fmt.Sprintf("%p", ss)
}

// armIdle starts the inactivity timer: a session with no live
// subscription is closed after twice the inactivity timeout, at least 5 s
// (RFC 8490 §6.2). Keepalives do not count as activity.
func (ss *session) armIdle() {
	p := ss.srv.policy.Load()
	wait := max(5*time.Second, 2*p.inactivity)
	if ss.idle != nil {
		ss.idle.Reset(wait)
		return
	}
	ss.idle = time.AfterFunc(wait, func() { ss.close("inactive") })
}

func (ss *session) stopTimer() {
	if ss.idle != nil {
		ss.idle.Stop()
	}
}

// close aborts the session; rawdns then reports the connection closed.
func (ss *session) close(reason string) {
	sessionsClosed.WithLabelValues(reason).Inc()
	log.Debugf("closing a session: %s", reason)
	ss.conn.Close()
}

// fatal ends the session for a protocol error of the client's (RFC 8490
// §5.4: a forcible abort).
func (ss *session) fatal(why string) {
	log.Debugf("ending a session: %s", why)
	ss.close("protocol error")
}

func (ss *session) write(m *dso.Message) {
	b, err := m.Pack()
	if err != nil {
		log.Errorf("packing a DSO message: %v", err)
		return
	}
	if err := ss.conn.Write(b); err != nil {
		ss.close("write failed")
	}
}

// respond answers the request with ID id.
func (ss *session) respond(id uint16, rcode int, tlvs ...dso.TLV) {
	ss.write(&dso.Message{ID: id, Response: true, Rcode: rcode, TLVs: tlvs})
}

// push sends changes in as few PUSH messages as fit; ss.mu is held.
func (ss *session) push(changes []dso.Change) {
	for len(changes) > 0 {
		n, size := 0, 0
		for n < len(changes) && (n == 0 || size < maxPush) {
			size += len(changes[n].Name) + 12 + len(changes[n].Data)
			n++
		}
		tlv, err := dso.Push(changes[:n])
		if err != nil {
			log.Errorf("packing a PUSH: %v", err)
			return
		}
		ss.write(&dso.Message{TLVs: []dso.TLV{tlv}})
		pushes.Inc()
		changes = changes[n:]
	}
}

// handleDSO serves one DSO message.
func (ss *session) handleDSO(raw []byte) {
	m, err := dso.Parse(raw)
	if err != nil {
		ss.fatal(err.Error())
		return
	}
	if m.Response {
		// This server sends no requests, so there is nothing to answer.
		ss.fatal("a response to no request")
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if m.Unidirectional() && !ss.established {
		ss.fatal("a unidirectional message before the session began")
		return
	}
	prim, _ := m.Primary()
	switch prim.Type {
	case dso.TypeKeepalive:
		if m.Unidirectional() {
			ss.fatal("a Keepalive from the client that wants no answer")
			return
		}
		if _, err := dso.ParseKeepalive(prim.Data); err != nil {
			ss.respond(m.ID, dns.RcodeFormatError)
			return
		}
		// The server's values are binding (RFC 8490 §7.1.1).
		p := ss.srv.policy.Load()
		ss.established = true
		ss.respond(m.ID, dns.RcodeSuccess, dso.Keepalive{Inactivity: uint32(p.inactivity.Milliseconds()), Interval: uint32(p.keepalive.Milliseconds())}.TLV())
	case dso.TypeSubscribe:
		if m.Unidirectional() {
			ss.fatal("a SUBSCRIBE without a message ID")
			return
		}
		ss.subscribe(m.ID, prim.Data)
	case dso.TypeUnsubscribe:
		if !m.Unidirectional() {
			ss.fatal("an UNSUBSCRIBE with a message ID")
			return
		}
		id, err := dso.ParseUnsubscribe(prim.Data)
		if err != nil {
			ss.fatal(err.Error())
			return
		}
		ss.unsubscribe(id)
	case dso.TypeReconfirm:
		if m.Unidirectional() {
			ss.fatal("a RECONFIRM without a message ID")
			return
		}
		// This server is the zone's authority: what it serves is what is
		// there, and any removal is pushed when it happens (RFC 8765
		// §6.5).
		ss.established = true
		ss.respond(m.ID, dns.RcodeSuccess)
	default:
		if m.Unidirectional() {
			ss.fatal(fmt.Sprintf("an unknown DSO-TYPE %d without a message ID", prim.Type))
			return
		}
		ss.respond(m.ID, dso.RcodeDSOTypeNI)
	}
}

// subscribe serves a SUBSCRIBE; ss.mu is held.
func (ss *session) subscribe(id uint16, data []byte) {
	p := ss.srv.policy.Load()
	refuse := func(rcode int, why string, tlvs ...dso.TLV) {
		subscribes.WithLabelValues(dns.RcodeToString[rcode]).Inc()
		log.Debugf("SUBSCRIBE refused (%s): %s", dns.RcodeToString[rcode], why)
		ss.respond(id, rcode, tlvs...)
	}
	q, err := dso.ParseSubscribe(data)
	if err != nil {
		refuse(dns.RcodeFormatError, err.Error())
		return
	}
	name := dns.CanonicalName(q.Name)
	switch {
	case q.Class != dns.ClassINET && q.Class != dns.ClassANY:
		refuse(dns.RcodeRefused, "a class other than IN")
		return
	case !dns.IsSubDomain(p.zone.Zone(), name):
		refuse(dns.RcodeNotAuth, name+" is outside the zone")
		return
	case ss.key == "" && p.tsigRequired:
		refuse(dns.RcodeRefused, "no key proven on the session", dso.RetryDelay(retryDelay))
		return
	case ss.key != "" && !dns.IsSubDomain(ss.key, name):
		refuse(dns.RcodeRefused, name+" is not the key's "+ss.key, dso.RetryDelay(retryDelay))
		return
	}
	sub := &subscription{id: id, q: qkey{name, q.Type}, s: ss, owner: ss.owner()}
	s := ss.srv
	s.mu.Lock()
	if _, dup := ss.subs[id]; dup || ss.subs == nil {
		s.mu.Unlock()
		refuse(dns.RcodeFormatError, "a message ID in use by a live subscription")
		return
	}
	if s.byOwner[sub.owner] >= p.limit {
		s.mu.Unlock()
		refuse(dns.RcodeRefused, "over the limit of subscriptions", dso.RetryDelay(retryDelay))
		return
	}
	ss.subs[id] = sub
	set := s.byQ[sub.q]
	if set == nil {
		set = make(map[*subscription]struct{})
		s.byQ[sub.q] = set
	}
	set[sub] = struct{}{}
	s.byOwner[sub.owner]++
	liveSubscriptions.Inc()
	s.mu.Unlock()
	ss.stopTimer()
	ss.established = true

	// The response, then at once what is there now; the PUSHes of later
	// changes wait for ss.mu. A change committed between registering and
	// reading may come twice as an add, which a client takes as one.
	rrs, _, err := p.zone.Store().Lookup(name)
	if err != nil {
		log.Errorf("reading %s: %v", name, err)
	}
	subscribes.WithLabelValues("NOERROR").Inc()
	ss.respond(id, dns.RcodeSuccess)
	var initial []dso.Change
	for _, rr := range rrs {
		if q.Type != dns.TypeANY && rr.Header().Rrtype != q.Type {
			continue
		}
		if ch, err := dso.AddChange(rr); err == nil {
			initial = append(initial, ch)
		}
	}
	ss.push(initial)
}

// unsubscribe ends the subscription made with message ID id; an unknown
// ID is ignored (RFC 8765 §6.4); ss.mu is held.
func (ss *session) unsubscribe(id uint16) {
	s := ss.srv
	s.mu.Lock()
	sub, ok := ss.subs[id]
	if ok {
		delete(ss.subs, id)
		s.removeLocked(sub)
	}
	none := len(ss.subs) == 0
	s.mu.Unlock()
	if ok && none {
		ss.armIdle()
	}
}

// handleQuery answers a DNS query on the session, as the zone would. A
// signed one proves a key: the session's subscriptions are then held to
// that key's names (the way a client shows who it is, since DSO messages
// carry no TSIG).
func (ss *session) handleQuery(raw []byte) {
	p := ss.srv.policy.Load()
	r := new(dns.Msg)
	if err := r.Unpack(raw); err != nil || r.Response {
		ss.fatal("an unreadable message")
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var sig *dns.TSIG
	var res tsigauth.Result
	now := time.Now()
	m := new(dns.Msg).SetReply(r)
	if tsigauth.Signed(r) {
		res = tsigauth.CheckRaw(raw, r, p.zone.Keys, now)
		if res.FormErr {
			ss.writeMsg(new(dns.Msg).SetRcode(r, dns.RcodeFormatError))
			return
		}
		sig = r.IsTsig()
		r.Extra = r.Extra[:len(r.Extra)-1]
		m = new(dns.Msg).SetReply(r)
		switch {
		case res.Error != 0:
			m.Rcode = dns.RcodeNotAuth
		case ss.key != "" && ss.key != res.Key.Name:
			// One session, one user.
			m.Rcode = dns.RcodeRefused
		default:
			ss.key, ss.tag = res.Key.Name, members.SecretTag(res.Key.Secret)
		}
	}
	if m.Rcode == dns.RcodeSuccess {
		switch {
		case r.Opcode != dns.OpcodeQuery || len(r.Question) != 1:
			m.Rcode = dns.RcodeNotImplemented
		case !dns.IsSubDomain(p.zone.Zone(), dns.CanonicalName(r.Question[0].Name)):
			m.Rcode = dns.RcodeRefused
		default:
			m.Authoritative = true
			rcode, err := p.zone.Answer(m, dns.CanonicalName(r.Question[0].Name), r.Question[0].Qtype)
			if err != nil {
				log.Errorf("answering %s: %v", r.Question[0].Name, err)
			}
			m.Rcode = rcode
		}
	}
	if sig == nil {
		ss.writeMsg(m)
		return
	}
	b, err := tsigauth.PackReply(m, sig, res, now)
	if err != nil {
		log.Errorf("signing a reply: %v", err)
		return
	}
	if err := ss.conn.Write(b); err != nil {
		ss.close("write failed")
	}
}

func (ss *session) writeMsg(m *dns.Msg) {
	b, err := m.Pack()
	if err != nil {
		return
	}
	if err := ss.conn.Write(b); err != nil {
		ss.close("write failed")
	}
}
