package llq

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
)

// handle is what the reader does with each message from the server: an
// event (a response whose LLQ options include op EVENT) is acknowledged
// and delivered; any other response goes to the request with its message
// ID. Everything else is dropped.
func (c *Client) handle(raw []byte, now time.Time) {
	m := new(dns.Msg)
	if err := m.Unpack(raw); err != nil || !m.Response {
		return
	}
	// A reply with an LLQ option of another version still goes to its
	// request, which then fails with BAD-VERS.
	if opts, err := llqopt.From(m); err == nil {
		for _, o := range opts {
			if o.Opcode == llqopt.Event {
				c.handleEvent(raw, m, opts, now)
				return
			}
		}
	}
	c.handleReply(raw, m)
}

func (c *Client) handleReply(raw []byte, m *dns.Msg) {
	c.mu.Lock()
	p := c.pending[m.Id]
	c.mu.Unlock()
	if p == nil || !sameQuestion(m, p.q) {
		return
	}
	if c.key != nil && !c.authentic(raw, m, p.mac, true) {
		return
	}
	if p.setup != nil {
		c.register(m, p.setup)
	}
	select {
	case p.ch <- m:
	default: // a duplicate
	}
}

// handleEvent acknowledges an event that names at least one of our LLQs
// and, the first time it is seen, delivers it.
func (c *Client) handleEvent(raw []byte, m *dns.Msg, opts []llqopt.Option, now time.Time) {
	var ours []*LLQ
	c.mu.Lock()
	for _, o := range opts {
		if l := c.llqs[o.ID]; o.Opcode == llqopt.Event && l != nil && !slices.Contains(ours, l) {
			ours = append(ours, l)
		}
	}
	c.mu.Unlock()
	if len(ours) == 0 {
		return // not ours: no ack, or we would help whoever sent it
	}
	if c.key != nil && !c.authentic(raw, m, "", false) {
		return
	}
	c.ack(m)

	k := eventKey(m, opts)
	if t, ok := c.seen[k]; ok && now.Sub(t) < eventMemory {
		return // a retransmission: our ack was lost or late
	}
	c.remember(k, now)

	for _, l := range ours {
		ev := Event{ID: l.ID(), Name: l.name, Qtype: l.qtype}
		for _, rr := range m.Answer {
			if len(ours) > 1 && !answers(rr, l) {
				continue
			}
			rr = dns.Copy(rr)
			if rr.Header().Ttl == llqopt.RemoveTTL {
				rr.Header().Ttl = 0
				ev.Removed = append(ev.Removed, rr)
			} else {
				ev.Added = append(ev.Added, rr)
			}
		}
		select {
		case c.events <- ev:
		default:
			c.dropped.Add(1)
			c.logf("llq: event for %s %s dropped: the consumer is slow", l.name, dns.Type(l.qtype))
		}
	}
}

// answers reports whether rr belongs to l, for events that batch several
// LLQs: its owner is l's name and it has l's type, or is a CNAME.
func answers(rr dns.RR, l *LLQ) bool {
	h := rr.Header()
	return strings.EqualFold(h.Name, l.name) && (h.Rrtype == l.qtype || h.Rrtype == dns.TypeCNAME)
}

// ack sends the acknowledgement of event m (RFC 8764 §6.3): a response
// with m's message ID, question section and OPT RR, and nothing else;
// signed as a new message if the client has a key (and UnsignedAcks is
// off).
func (c *Client) ack(m *dns.Msg) {
	a := new(dns.Msg)
	a.Id = m.Id
	a.Response = true
	a.Opcode = m.Opcode
	a.Question = m.Question
	if opt := m.IsEdns0(); opt != nil {
		a.Extra = []dns.RR{opt}
	}
	var (
		b   []byte
		err error
	)
	if c.key != nil && !c.cfg.UnsignedAcks {
		b, _, err = c.pack(a)
	} else {
		b, err = a.Pack()
	}
	if err == nil {
		err = c.tr.write(b)
	}
	if err != nil {
		c.logf("llq: acknowledging event %d: %v", m.Id, err)
	}
}

// eventKey identifies an event across retransmissions: its message ID,
// LLQ options and answers (not its TSIG, which a server may renew).
func eventKey(m *dns.Msg, opts []llqopt.Option) uint64 {
	h := fnv.New64a()
	b := binary.BigEndian.AppendUint16(nil, m.Id)
	for _, o := range opts {
		b = binary.BigEndian.AppendUint16(b, uint16(o.Opcode))
		b = binary.BigEndian.AppendUint16(b, uint16(o.Error))
		b = binary.BigEndian.AppendUint64(b, o.ID)
		b = binary.BigEndian.AppendUint32(b, o.Lease)
	}
	h.Write(b)
	for _, rr := range m.Answer {
		h.Write([]byte(rr.String()))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// remember notes that the event with key k was seen at now, forgetting
// the ones seen too long ago.
func (c *Client) remember(k uint64, now time.Time) {
	if len(c.seen) >= maxEventMemory {
		for k, t := range c.seen {
			if now.Sub(t) >= eventMemory {
				delete(c.seen, k)
			}
		}
		if len(c.seen) >= maxEventMemory {
			clear(c.seen) // a flood: better a duplicate than unbounded memory
		}
	}
	c.seen[k] = now
}
