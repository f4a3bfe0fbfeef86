package llq

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

// pending is a request waiting for its reply.
type pending struct {
	q   dns.Question
	mac string // the request's TSIG MAC, "" if unsigned
	// setup, for a setup request, is the LLQ to register under the LLQ-ID
	// that a successful reply assigns (see register).
	setup *LLQ
	ch    chan *dns.Msg // the first acceptable reply; buffered
}

// exchange sends m with a fresh random message ID, signed if the client
// has a key, and returns the first acceptable reply. Over UDP it
// retransmits the same octets on c.cfg.retry's schedule.
func (c *Client) exchange(ctx context.Context, m *dns.Msg, setup *LLQ) (*dns.Msg, error) {
	p := &pending{q: m.Question[0], setup: setup, ch: make(chan *dns.Msg, 1)}
	c.mu.Lock()
	if c.closing || c.err != nil {
		c.mu.Unlock()
		return nil, c.stoppedErr()
	}
	for {
		m.Id = randomID()
		if _, dup := c.pending[m.Id]; !dup {
			break
		}
	}
	b, mac, err := c.pack(m)
	if err != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("llq: %w", err)
	}
	p.mac = mac
	c.pending[m.Id] = p
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, m.Id)
		c.mu.Unlock()
	}()

	waits := c.cfg.retry
	if c.stream {
		var total time.Duration
		for _, w := range waits {
			total += w
		}
		waits = []time.Duration{total}
	}
	var werr error
	for _, wait := range waits {
		if err := c.tr.write(b); err != nil {
			if c.stream {
				return nil, fmt.Errorf("llq: %w", err)
			}
			// Maybe the network is changing: try again on schedule.
			werr = err
			c.logf("llq: sending to %s: %v", c.cfg.Server, err)
		}
		t := time.NewTimer(wait)
		select {
		case r := <-p.ch:
			t.Stop()
			return r, nil
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-c.done:
			t.Stop()
			return nil, c.stoppedErr()
		}
	}
	if werr != nil {
		return nil, fmt.Errorf("%w (sending: %v)", ErrTimeout, werr)
	}
	return nil, ErrTimeout
}

// stoppedErr is the error for a request on a closed or failed client.
func (c *Client) stoppedErr() error {
	if err := c.Err(); err != nil && err != ErrClosed {
		return fmt.Errorf("llq: connection lost: %w", err)
	}
	return ErrClosed
}

func randomID() uint16 {
	var b [2]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint16(b[:])
}

// pack returns m on the wire, signed as a new message (no request MAC) if
// the client has a key, and the MAC.
func (c *Client) pack(m *dns.Msg) ([]byte, string, error) {
	if c.key == nil {
		b, err := m.Pack()
		return b, "", err
	}
	m.SetTsig(c.key.Name, c.key.Algorithm, tsigFudge, time.Now().Unix())
	return dns.TsigGenerateWithProvider(m, tsigauth.HMAC(c.key.Secret), "", false)
}

// authentic reports whether raw (parsed as m) carries a valid TSIG of the
// client's key, made with requestMAC. With notAuth, a NOTAUTH reply also
// passes if its TSIG error says why it is unsigned (BADKEY, BADSIG) or if
// its MAC, which miekg/dns refuses to check on NOTAUTH, is right (BADTIME).
func (c *Client) authentic(raw []byte, m *dns.Msg, requestMAC string, notAuth bool) bool {
	t := m.IsTsig()
	if t == nil || dns.CanonicalName(t.Hdr.Name) != c.key.Name {
		return false
	}
	if m.Rcode == dns.RcodeNotAuth {
		if !notAuth || t.Error == 0 {
			return false
		}
		if t.MAC == "" {
			return t.Error == dns.RcodeBadKey || t.Error == dns.RcodeBadSig
		}
		return tsigauth.VerifyReply(raw, c.key.Secret, requestMAC) == nil
	}
	if dns.CanonicalName(t.Algorithm) != c.key.Algorithm {
		return false
	}
	// TsigVerifyWithProvider writes into the buffer: give it a copy.
	err := dns.TsigVerifyWithProvider(append([]byte(nil), raw...), tsigauth.HMAC(c.key.Secret), requestMAC, false)
	if err != nil {
		c.logf("llq: message %d from %s: TSIG: %v", m.Id, c.cfg.Server, err)
		return false
	}
	return true
}

// sameQuestion reports whether r answers q. Error replies may come
// without the question.
func sameQuestion(r *dns.Msg, q dns.Question) bool {
	if len(r.Question) == 0 {
		return r.Rcode != dns.RcodeSuccess
	}
	return len(r.Question) == 1 && r.Question[0].Qtype == q.Qtype && r.Question[0].Qclass == q.Qclass &&
		strings.EqualFold(r.Question[0].Name, q.Name)
}

// check returns the LLQ option of a reply to a request with opcode op,
// or the error the reply carries. With id 0 the reply must assign an
// LLQ-ID; otherwise it must echo id.
func check(r *dns.Msg, op llqopt.Opcode, id uint64) (llqopt.Option, error) {
	opts, err := llqopt.From(r)
	var o llqopt.Option
	if err == nil && len(opts) > 0 {
		o = opts[0]
	}
	if r.Rcode != dns.RcodeSuccess {
		e := &SetupError{Op: op, Rcode: r.Rcode, LLQError: o.Error, Lease: o.Lease}
		if t := r.IsTsig(); t != nil && r.Rcode == dns.RcodeNotAuth {
			e.TSIGError = t.Error
		}
		return o, e
	}
	var bad llqopt.ErrVersion
	switch {
	case errors.As(err, &bad):
		return o, &SetupError{Op: op, LLQError: llqopt.BadVers}
	case err != nil:
		return o, err
	case len(opts) == 0:
		return o, ErrNotLLQ
	case o.Error != llqopt.NoError:
		return o, &SetupError{Op: op, LLQError: o.Error, Lease: o.Lease}
	case o.Opcode != op:
		return o, fmt.Errorf("%w: opcode %v to %v", ErrProtocol, o.Opcode, op)
	case id == 0 && o.ID == 0, id != 0 && o.ID != id:
		return o, fmt.Errorf("%w: LLQ-ID %#x", ErrProtocol, o.ID)
	}
	return o, nil
}
