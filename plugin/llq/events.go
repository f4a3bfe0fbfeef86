package llq

import (
	"errors"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
	"github.com/openbtmm/btmm/plugin/pkg/members"
	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

// pendingEvent is an event sent and not yet acknowledged.
type pendingEvent struct {
	id    uint16 // DNS message ID, which the acknowledgement echoes
	b     []byte // the packed message, sent again as it is
	tries int
	timer *time.Timer
}

func (p *pendingEvent) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}

// changed turns one committed change of the store into events for the
// LLQs it answers: only those on the changed names, found through the index
// by name and type, plus those of type ANY on the name.
func (s *Server) changed(ev store.Event) {
	type batch struct {
		l       *llq
		answers []dns.RR
	}
	if len(ev.Users) > 0 {
		s.usersChanged(ev.Users, s.policy.Load())
	}
	var batches []*batch
	byLLQ := make(map[*llq]*batch)
	now := s.now()
	s.mu.Lock()
	for _, c := range ev.Changes {
		add := func(rr dns.RR, remove bool) {
			if remove {
				rr = dns.Copy(rr)
				rr.Header().Ttl = llqopt.RemoveTTL
			}
			t := rr.Header().Rrtype
			for _, set := range []map[uint64]*llq{s.t.byQ[qkey{c.Name, t}], s.t.byQ[qkey{c.Name, dns.TypeANY}]} {
				for _, l := range set {
					if l.state != established || l.expired(now) {
						continue
					}
					b, ok := byLLQ[l]
					if !ok {
						b = &batch{l: l}
						byLLQ[l] = b
						batches = append(batches, b)
					}
					b.answers = append(b.answers, rr)
				}
			}
		}
		for _, rr := range c.Removed {
			add(rr, true)
		}
		for _, rr := range c.Added {
			add(rr, false)
		}
	}
	s.mu.Unlock()
	for _, b := range batches {
		s.sendEvent(b.l, b.answers)
	}
}

// sendEvent sends answers to l as one or more events (RFC 8764 §6.2),
// each kept for retransmission until acknowledged.
func (s *Server) sendEvent(l *llq, answers []dns.RR) {
	p := s.policy.Load()
	for len(answers) > 0 {
		m := new(dns.Msg)
		m.Id = randomMsgID()
		m.Response, m.Authoritative = true, true
		s.mu.Lock()
		q, key, tag, id := l.q, l.key, l.keyTag, l.id
		s.mu.Unlock()
		m.Question = []dns.Question{{Name: q.name, Qtype: q.qtype, Qclass: dns.ClassINET}}
		// As many answers as fit one datagram; the rest in the next event.
		n := len(answers)
		for {
			m.Answer = answers[:n]
			m.Extra = nil
			llqopt.Set(m, maxUDP, llqopt.Option{Opcode: llqopt.Event, ID: id})
			if n == 1 || m.Len() <= maxUDP-200 { // room for a TSIG
				break
			}
			n = (n + 1) / 2
		}
		answers = answers[n:]
		b, err := s.packEvent(m, key, tag, p)
		if err != nil {
			if errors.Is(err, errRevoked) {
				log.Debugf("LLQ %x: key %s was revoked, ending it", id, key)
			} else {
				log.Errorf("packing an event for LLQ %x: %v", id, err)
			}
			s.mu.Lock()
			s.t.remove(l)
			s.mu.Unlock()
			return
		}
		pe := &pendingEvent{id: m.Id, b: b}
		s.mu.Lock()
		if s.t.byID[id] != l {
			s.mu.Unlock()
			return // ended meanwhile
		}
		if len(l.pending) >= maxPending {
			log.Debugf("LLQ %x: %d events unacknowledged, ending it", id, len(l.pending))
			s.t.remove(l)
			eventsDropped.Inc()
			s.mu.Unlock()
			return
		}
		if l.pending == nil {
			l.pending = make(map[uint16]*pendingEvent)
		}
		l.pending[pe.id] = pe
		s.mu.Unlock()
		s.transmit(l, pe)
		eventsSent.Inc()
	}
}

// errRevoked says an LLQ's key is no longer one its user may sign with.
var errRevoked = errors.New("llq: key revoked")

// packEvent signs an event with the LLQ's key, if it has one: the secret
// its client signed with (tag), which may be the previous one while the
// user's key is rotated. An event starts an exchange, so it is signed as
// a request (no request MAC).
func (s *Server) packEvent(m *dns.Msg, key string, tag uint32, p *policy) ([]byte, error) {
	if key == "" {
		return m.Pack()
	}
	k, ok := members.KeyByTag(p.zone, key, tag)
	if !ok {
		// The key was revoked, or its rotation's overlap ended: the LLQ
		// may not hear more.
		return nil, errRevoked
	}
	m.SetTsig(k.Name, k.Algorithm, 300, s.now().Unix())
	b, _, err := dns.TsigGenerateWithProvider(m, tsigauth.HMAC(k.Secret), "", false)
	return b, err
}

// usersChanged ends, at once, the LLQs set up with a key that its user may
// no longer sign with: the user was revoked or its key replaced. The
// connections (TCP, TLS) that carried them are closed, so that their
// clients learn of it at once; a client over UDP learns at its next
// refresh (NoSuchLLQ, then BADKEY when it sets up again).
func (s *Server) usersChanged(names []string, p *policy) {
	changed := make(map[string]bool, len(names))
	for _, n := range names {
		changed[n] = true
	}
	type candidate struct {
		l   *llq
		key string
		tag uint32
	}
	var check []candidate
	s.mu.Lock()
	for _, l := range s.t.byID {
		if l.key != "" && changed[l.key] {
			check = append(check, candidate{l, l.key, l.keyTag})
		}
	}
	s.mu.Unlock()
	var ended int
	conns := make(map[*conn]bool)
	for _, c := range check {
		if _, ok := members.KeyByTag(p.zone, c.key, c.tag); ok {
			continue
		}
		s.mu.Lock()
		if s.t.byID[c.l.id] == c.l {
			if c.l.conn != nil {
				conns[c.l.conn] = true
			}
			s.t.remove(c.l)
			ended++
		}
		s.mu.Unlock()
	}
	for c := range conns {
		c.close()
	}
	if ended > 0 {
		s.mu.Lock()
		liveLLQs.Set(float64(len(s.t.byID)))
		s.mu.Unlock()
		log.Infof("ended %d LLQs whose key was revoked or replaced", ended)
	}
}

// transmit sends pe to l and schedules its retransmission; after the last
// unanswered wait, l ends (RFC 8764 §6.3, RFC 6281 §5.3).
func (s *Server) transmit(l *llq, pe *pendingEvent) {
	s.mu.Lock()
	if l.pending[pe.id] != pe {
		s.mu.Unlock()
		return // acknowledged, or the LLQ ended
	}
	if pe.tries == len(resendAfter) {
		log.Debugf("LLQ %x: event not acknowledged after %d tries, ending it", l.id, pe.tries)
		s.t.remove(l)
		liveLLQs.Set(float64(len(s.t.byID)))
		eventsDropped.Inc()
		s.mu.Unlock()
		return
	}
	to := origin{addr: l.to, conn: l.conn}
	wait := resendAfter[pe.tries]
	pe.tries++
	resend := pe.tries > 1
	pe.timer = time.AfterFunc(wait, func() { s.transmit(l, pe) })
	s.mu.Unlock()
	if resend {
		eventsResent.Inc()
	}
	if err := s.send(to, pe.b); err != nil && to.conn != nil {
		// The connection is gone: the next try goes by UDP.
		s.connGone(to.conn)
	}
}

// acknowledged matches an acknowledgement (a response echoing the event's
// message ID and option) to its pending event.
func (s *Server) acknowledged(req *request, opts []llqopt.Option) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range opts {
		l := s.t.byID[o.ID]
		if l == nil || l.to.Addr() != req.from.addr.Addr() && l.conn != req.from.conn {
			continue
		}
		if pe, ok := l.pending[req.msg.Id]; ok {
			pe.stop()
			delete(l.pending, req.msg.Id)
			eventsAcked.Inc()
		}
	}
}

// connGone moves the LLQs of a closed connection to UDP, to the address
// their setup named (the port hint, or the connection's port).
func (s *Server) connGone(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[c.rc] == c {
		delete(s.conns, c.rc)
	}
	for _, l := range c.llqs {
		if l.conn == c {
			l.conn = nil
		}
	}
	c.llqs = nil
}

func netipPort(a netip.AddrPort, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr(), port)
}
