package llq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
)

// LLQ is one long-lived query on a Client. Its methods are safe for
// concurrent use.
type LLQ struct {
	c     *Client
	name  string // fully qualified, as sent
	qtype uint16
	key   question
	id    atomic.Uint64 // 0 until the server assigns it

	mu      sync.Mutex // guards following
	granted uint32     // seconds: the lease first granted, asked again by Refresh
	lease   time.Duration
	expires time.Time // zero while being set up
	gone    bool      // canceled, failed, or unknown to the server
}

// ID is the LLQ-ID the server assigned.
func (l *LLQ) ID() uint64 { return l.id.Load() }

// Name is the LLQ's question name, fully qualified.
func (l *LLQ) Name() string { return l.name }

// Qtype is the LLQ's question type.
func (l *LLQ) Qtype() uint16 { return l.qtype }

// Lease is the lease the server last granted, at setup or refresh.
func (l *LLQ) Lease() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lease
}

// Expires is when the lease last granted ends, as the client counts it
// from the arrival of the reply that granted it. RFC 8764 §7 asks to
// refresh at 80 % of the lease, and again at 90 % and 95 % if no reply
// came; servers accept earlier refreshes too.
func (l *LLQ) Expires() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.expires
}

// live reports whether l still counts as an LLQ on its client.
func (l *LLQ) live(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.gone && (l.expires.IsZero() || now.Before(l.expires))
}

// Setup establishes an LLQ for name (class IN) and type qtype and returns
// it with the records that answer it now. Over UDP this is the four-way
// handshake of RFC 8764 §5.2, over TCP and TLS the two-message exchange.
//
// Errors: *SetupError for an error answer (SERV-FULL, STATIC, REFUSED,
// NOTAUTH…), ErrTimeout, ErrNotLLQ, ErrProtocol, ErrExists, the context's
// error, or the client's if it stopped.
func (c *Client) Setup(ctx context.Context, name string, qtype uint16) (*LLQ, []dns.RR, error) {
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, nil, fmt.Errorf("llq: bad name %q", name)
	}
	// RFC 8764 §5.2 forbids ANY; the other meta types make no sense.
	if qtype == dns.TypeANY || qtype == dns.TypeOPT || qtype == dns.TypeTSIG || qtype == dns.TypeAXFR || qtype == dns.TypeIXFR || qtype == dns.TypeNone {
		return nil, nil, fmt.Errorf("llq: no LLQ for type %s", dns.Type(qtype))
	}
	name = dns.Fqdn(name)
	l := &LLQ{c: c, name: name, qtype: qtype, key: question{dns.CanonicalName(name), qtype}}

	c.mu.Lock()
	if old := c.questions[l.key]; old != nil {
		if old.live(time.Now()) {
			c.mu.Unlock()
			return nil, nil, ErrExists
		}
		c.forgetLocked(old)
	}
	c.questions[l.key] = l
	c.mu.Unlock()

	answers, err := c.setup(ctx, l)
	if err != nil {
		c.forget(l)
		return nil, nil, err
	}
	return l, answers, nil
}

func (c *Client) setup(ctx context.Context, l *LLQ) ([]dns.RR, error) {
	r, err := c.exchange(ctx, c.request(l, llqopt.Option{Opcode: llqopt.Setup, Lease: c.lease}), l)
	if err != nil {
		return nil, err
	}
	o, err := check(r, llqopt.Setup, 0)
	if err != nil {
		return nil, err
	}
	granted := o.Lease
	if !c.stream {
		// r is the challenge. The challenge response goes out with a new
		// message ID, so a late copy of the challenge (which looks just
		// like an empty ACK+Answers, RFC 8764 Appendix A) cannot pass for
		// its reply.
		r, err = c.exchange(ctx, c.request(l, llqopt.Option{Opcode: llqopt.Setup, ID: o.ID, Lease: o.Lease}), l)
		if err != nil {
			return nil, err
		}
		if o, err = check(r, llqopt.Setup, o.ID); err != nil {
			return nil, err
		}
	}
	if l.ID() != o.ID {
		// The reader registers the first ID it sees; it was not this one.
		return nil, fmt.Errorf("%w: LLQ-ID %#x, challenged with %#x", ErrProtocol, o.ID, l.ID())
	}
	l.mu.Lock()
	l.granted = granted
	l.setLeaseLocked(o.Lease)
	l.mu.Unlock()
	return r.Answer, nil
}

func (l *LLQ) setLeaseLocked(secs uint32) {
	l.lease = time.Duration(secs) * time.Second
	l.expires = time.Now().Add(l.lease)
}

// request makes a query for l's question carrying o.
func (c *Client) request(l *LLQ, o llqopt.Option) *dns.Msg {
	m := new(dns.Msg)
	m.Question = []dns.Question{{Name: l.name, Qtype: l.qtype, Qclass: dns.ClassINET}}
	if c.stream {
		o.Error = llqopt.Error(c.cfg.UDPPortHint)
	}
	llqopt.Set(m, ednsSize, o)
	return m
}

// register runs in the reader for each reply to a setup request, before
// the reply is handed over: the first LLQ-ID a successful reply assigns
// (the challenge's over UDP, the ACK's over TCP) makes l known, so that
// events sent right after the ACK are accepted.
func (c *Client) register(r *dns.Msg, l *LLQ) {
	if r.Rcode != dns.RcodeSuccess {
		return
	}
	opts, err := llqopt.From(r)
	if err != nil || len(opts) == 0 {
		return
	}
	o := opts[0]
	if o.Opcode != llqopt.Setup || o.Error != llqopt.NoError || o.ID == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.id.Load() != 0 || c.questions[l.key] != l || c.llqs[o.ID] != nil {
		return
	}
	l.id.Store(o.ID)
	c.llqs[o.ID] = l
}

// forget removes l from its client: no more events are accepted for it.
func (c *Client) forget(l *LLQ) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgetLocked(l)
}

func (c *Client) forgetLocked(l *LLQ) {
	if c.questions[l.key] == l {
		delete(c.questions, l.key)
	}
	if id := l.id.Load(); c.llqs[id] == l {
		delete(c.llqs, id)
	}
	l.mu.Lock()
	l.gone = true
	l.mu.Unlock()
}

// Refresh renews the lease, asking for the one first granted (RFC 8764
// §7), and updates Lease and Expires. A *SetupError with LLQError
// NO-SUCH-LLQ means the server has forgotten the LLQ: it is dropped, and
// must be set up again (as after ErrCanceled).
func (l *LLQ) Refresh(ctx context.Context) error {
	l.mu.Lock()
	gone, lease := l.gone, l.granted
	l.mu.Unlock()
	if gone {
		return ErrCanceled
	}
	o, err := l.refresh(ctx, lease)
	if err != nil {
		var se *SetupError
		if errors.As(err, &se) && se.LLQError == llqopt.NoSuchLLQ {
			l.c.forget(l)
		}
		return err
	}
	l.mu.Lock()
	l.setLeaseLocked(o.Lease)
	l.mu.Unlock()
	return nil
}

// Cancel ends the LLQ: a refresh with lease 0 (RFC 8764 §7). The client
// stops accepting its events at once, whether or not the server answers.
// Canceling an LLQ that is gone already does nothing.
func (l *LLQ) Cancel(ctx context.Context) error {
	l.mu.Lock()
	gone := l.gone
	l.mu.Unlock()
	if gone {
		return nil
	}
	l.c.forget(l)
	_, err := l.refresh(ctx, 0)
	var se *SetupError
	if errors.As(err, &se) && se.LLQError == llqopt.NoSuchLLQ {
		return nil
	}
	return err
}

func (l *LLQ) refresh(ctx context.Context, lease uint32) (llqopt.Option, error) {
	id := l.ID()
	r, err := l.c.exchange(ctx, l.c.request(l, llqopt.Option{Opcode: llqopt.Refresh, ID: id, Lease: lease}), nil)
	if err != nil {
		return llqopt.Option{}, err
	}
	return check(r, llqopt.Refresh, id)
}
