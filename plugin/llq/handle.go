package llq

import (
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
	"github.com/openbtmm/btmm/plugin/pkg/members"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

// request is one message being handled, with what its TSIG said.
type request struct {
	raw  []byte
	msg  *dns.Msg
	from origin
	sig  *dns.TSIG // the request's TSIG RR, nil if unsigned
	key  string    // the verified key's name, "" if unsigned
	auth tsigauth.Result
}

// handle processes one message that arrived on a listener. It never
// blocks on anything but the client's own connection.
func (s *Server) handle(raw []byte, from origin) {
	p := s.policy.Load()
	m := new(dns.Msg)
	if err := m.Unpack(raw); err != nil {
		// Answer FORMERR if at least the header is there.
		if len(raw) >= 12 && raw[2]&0x80 == 0 {
			r := new(dns.Msg)
			r.Id = uint16(raw[0])<<8 | uint16(raw[1])
			r.Response, r.Rcode = true, dns.RcodeFormatError
			if b, err := r.Pack(); err == nil {
				s.send(from, b)
			}
		}
		return
	}
	req := &request{raw: raw, msg: m, from: from}
	if tsigauth.Signed(m) {
		req.auth = tsigauth.CheckRaw(raw, m, p.zone.Keys, s.now())
		if req.auth.FormErr {
			if !m.Response {
				s.reply(req, new(dns.Msg).SetRcode(m, dns.RcodeFormatError))
			}
			return
		}
		req.sig = m.IsTsig()
		m.Extra = m.Extra[:len(m.Extra)-1]
		if req.auth.Error != 0 {
			requests.WithLabelValues("tsig-" + dns.RcodeToString[int(req.auth.Error)]).Inc()
			if !m.Response {
				s.reply(req, new(dns.Msg).SetRcode(m, dns.RcodeNotAuth))
			}
			return
		}
		req.key = req.auth.Key.Name
	}

	opts, err := llqopt.From(m)
	switch {
	case m.Response:
		// Responses we expect are acknowledgements of events.
		if err == nil && len(opts) > 0 && opts[0].Opcode == llqopt.Event {
			s.acknowledged(req, opts)
		}
	case m.Opcode != dns.OpcodeQuery:
		s.reply(req, new(dns.Msg).SetRcode(m, dns.RcodeNotImplemented))
	case err != nil:
		// RFC 8764 §3.2: BAD-VERS in the option, per question.
		s.replyLLQ(req, 0, func(int) llqopt.Option { return llqopt.Option{Error: llqopt.BadVers} })
	case len(opts) == 0:
		s.plainQuery(req, p)
	default:
		s.llqRequest(req, p, opts)
	}
}

// plainQuery answers a query without the LLQ option, as the zone would.
func (s *Server) plainQuery(req *request, p *policy) {
	m := new(dns.Msg).SetReply(req.msg)
	m.Authoritative = true
	if len(req.msg.Question) != 1 || !dns.IsSubDomain(p.zone.Zone(), req.msg.Question[0].Name) {
		m.Rcode = dns.RcodeRefused
	} else {
		q := req.msg.Question[0]
		rcode, err := p.zone.Answer(m, dns.CanonicalName(q.Name), q.Qtype)
		if err != nil {
			rcode = dns.RcodeServerFailure
		}
		m.Rcode = rcode
	}
	s.reply(req, m)
}

// llqRequest handles setup requests, challenge responses and refreshes:
// one LLQ option per question, in order (RFC 8764 §3.2).
func (s *Server) llqRequest(req *request, p *policy, opts []llqopt.Option) {
	m := req.msg
	if len(opts) != len(m.Question) {
		s.replyLLQ(req, 0, func(int) llqopt.Option { return llqopt.Option{Error: llqopt.FormatErr} })
		return
	}
	// Authorisation first, for the whole message (RFC 6281 §7.2): a key
	// may only watch its own subtree, and unsigned LLQs only where allowed.
	for _, q := range m.Question {
		name := dns.CanonicalName(q.Name)
		switch {
		case !dns.IsSubDomain(p.zone.Zone(), name):
			s.refuse(req, "outside the zone")
			return
		case req.key == "" && p.tsigRequired:
			s.refuse(req, "unsigned")
			return
		case req.key != "" && !dns.IsSubDomain(req.key, name):
			s.refuse(req, "outside the key's subtree")
			return
		}
	}

	var answers []dns.RR
	var extra []dns.RR
	out := make([]llqopt.Option, len(opts))
	for i, o := range opts {
		q := m.Question[i]
		qk := qkey{name: dns.CanonicalName(q.Name), qtype: q.Qtype}
		var res llqopt.Option
		switch {
		case q.Qclass != dns.ClassINET:
			res = llqopt.Option{Opcode: o.Opcode, Error: llqopt.FormatErr}
		case o.Opcode == llqopt.Setup && o.ID == 0:
			res = s.setup(req, p, qk, o)
		case o.Opcode == llqopt.Setup:
			res = s.challengeResponse(req, qk, o)
		case o.Opcode == llqopt.Refresh:
			res = s.refresh(req, p, qk, o)
		default:
			res = llqopt.Option{Opcode: o.Opcode, Error: llqopt.FormatErr}
		}
		out[i] = res
		requests.WithLabelValues(res.Opcode.String() + "-" + res.Error.String()).Inc()
		// The ACK of an established setup carries the current answers.
		if res.Opcode == llqopt.Setup && res.Error == llqopt.NoError && (o.ID != 0 || req.from.conn != nil) {
			a := new(dns.Msg)
			if _, err := p.zone.Answer(a, qk.name, qk.qtype); err == nil {
				answers = append(answers, a.Answer...)
				extra = append(extra, a.Extra...)
			}
		}
	}
	r := new(dns.Msg).SetReply(m)
	r.Authoritative = true
	r.Answer, r.Extra = answers, extra
	llqopt.Set(r, udpSize(m), out...)
	s.reply(req, r)
}

// setup handles a Setup Request (LLQ-ID 0). Over UDP it answers with a
// challenge: a new ID that the client must echo from the same address and
// port before the LLQ is established. Over TCP and TLS the connection
// proves the address, so the LLQ is established at once (Apple's
// two-message setup), and a nonzero LLQ-ERROR is the client's UDP port for
// events after the connection ends.
func (s *Server) setup(req *request, p *policy, q qkey, o llqopt.Option) llqopt.Option {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.t.find(q, req.from.addr); l != nil && l.conn == req.from.conn {
		if l.state == challenged {
			// A retransmitted request: the same challenge again (§5.1).
			return llqopt.Option{Opcode: llqopt.Setup, ID: l.id, Lease: l.granted}
		}
		// A client that set up again from the same place restarted:
		// its old LLQ goes (as Apple's server does).
		s.t.remove(l)
	}
	owner := req.key
	if owner == "" {
		owner = req.from.addr.Addr().String()
	}
	if ok, _ := p.setups.Allow(owner); !ok {
		rateLimited.Inc()
		return llqopt.Option{Opcode: llqopt.Setup, Error: llqopt.ServFull, Lease: retryAfter}
	}
	if s.t.byOwner[owner] >= p.limit {
		return llqopt.Option{Opcode: llqopt.Setup, Error: llqopt.ServFull, Lease: retryAfter}
	}
	l := &llq{id: s.newIDLocked(), q: q, key: req.key, keyTag: members.SecretTag(req.auth.Key.Secret), owner: owner, granted: p.clamp(o.Lease), to: req.from.addr}
	s.t.renew(l, now.Add(time.Duration(l.granted)*time.Second))
	if req.from.conn != nil {
		l.state, l.conn = established, req.from.conn
		if hint := uint16(o.Error); hint != 0 {
			l.to = netipPort(req.from.addr, hint)
		}
	}
	s.t.add(l)
	liveLLQs.Set(float64(len(s.t.byID)))
	return llqopt.Option{Opcode: llqopt.Setup, ID: l.id, Lease: l.granted}
}

// challengeResponse establishes a challenged LLQ whose ID, lease, question
// and address all match (§5.2.2), and answers a repeated one again.
func (s *Server) challengeResponse(req *request, q qkey, o llqopt.Option) llqopt.Option {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.t.byID[o.ID]
	if l == nil || l.q != q || l.to != req.from.addr || l.key != req.key || l.expired(now) {
		return llqopt.Option{Opcode: llqopt.Setup, Error: llqopt.NoSuchLLQ}
	}
	// Apple's server allows the echoed lease some slack; so do we.
	if d := int64(o.Lease) - int64(l.granted); d < -60 || d > 60 {
		return llqopt.Option{Opcode: llqopt.Setup, Error: llqopt.FormatErr}
	}
	l.state = established
	return llqopt.Option{Opcode: llqopt.Setup, ID: l.id, Lease: remaining(l, now)}
}

// refresh renews an LLQ, or ends it for a lease of 0 (§7). A refresh may
// come from another port than the setup (Apple's clients do that), but
// from the same address, for the same question, with the same key.
func (s *Server) refresh(req *request, p *policy, q qkey, o llqopt.Option) llqopt.Option {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.t.byID[o.ID]
	if l == nil || l.state != established || l.q != q || l.key != req.key || l.expired(now) ||
		l.to.Addr() != req.from.addr.Addr() && l.conn != req.from.conn {
		return llqopt.Option{Opcode: llqopt.Refresh, Error: llqopt.NoSuchLLQ}
	}
	if o.Lease == 0 {
		s.t.remove(l)
		liveLLQs.Set(float64(len(s.t.byID)))
		return llqopt.Option{Opcode: llqopt.Refresh, ID: l.id}
	}
	// A client that took up its user's new key signs its events with it
	// from now on.
	l.keyTag = members.SecretTag(req.auth.Key.Secret)
	l.granted = p.clamp(o.Lease)
	s.t.renew(l, now.Add(time.Duration(l.granted)*time.Second))
	if c := req.from.conn; c != nil && l.conn != c {
		if l.conn != nil && l.conn.llqs != nil {
			delete(l.conn.llqs, l.id)
		}
		l.conn = c
		if c.llqs != nil {
			c.llqs[l.id] = l
		}
	}
	if req.from.conn != nil {
		if hint := uint16(o.Error); hint != 0 {
			l.to = netipPort(req.from.addr, hint)
		}
	} else if l.conn == nil {
		l.to = req.from.addr
	}
	return llqopt.Option{Opcode: llqopt.Refresh, ID: l.id, Lease: l.granted}
}

func remaining(l *llq, now time.Time) uint32 {
	left := time.Duration(l.expires - now.UnixNano())
	return uint32(max(left, 0) / time.Second)
}

// refuse answers REFUSED: the request is not allowed as a whole.
func (s *Server) refuse(req *request, why string) {
	log.Debugf("LLQ from %s refused: %s", req.from, why)
	requests.WithLabelValues("refused").Inc()
	s.reply(req, new(dns.Msg).SetRcode(req.msg, dns.RcodeRefused))
}

// replyLLQ answers every question with the option opt(i).
func (s *Server) replyLLQ(req *request, rcode int, opt func(int) llqopt.Option) {
	r := new(dns.Msg).SetRcode(req.msg, rcode)
	opts := make([]llqopt.Option, len(req.msg.Question))
	for i := range opts {
		opts[i] = opt(i)
	}
	llqopt.Set(r, udpSize(req.msg), opts...)
	s.reply(req, r)
}

// reply signs r if the request was signed, and sends it.
func (s *Server) reply(req *request, r *dns.Msg) {
	b, err := s.pack(r, req)
	if err != nil {
		log.Errorf("packing a reply to %s: %v", req.from, err)
		return
	}
	s.send(req.from, b)
}

func (s *Server) pack(r *dns.Msg, req *request) ([]byte, error) {
	if req.sig == nil {
		return r.Pack()
	}
	r.Extra = append(r.Extra, tsigauth.ReplyTSIG(req.sig, req.auth.Error, r.Id, s.now()))
	b, _, err := dns.TsigGenerateWithProvider(r, tsigauth.HMAC(req.auth.Key.Secret), req.sig.MAC, false)
	return b, err
}

func udpSize(m *dns.Msg) uint16 {
	if o := m.IsEdns0(); o != nil && o.UDPSize() >= dns.MinMsgSize {
		return o.UDPSize()
	}
	return dns.MinMsgSize
}
