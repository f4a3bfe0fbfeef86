// Package subscribe follows names in the user's domain by whichever push
// mechanism the server offers: DNS Push Notifications (RFC 8765, over TLS)
// where it advertises _dns-push-tls._tcp, else Long-Lived Queries (RFC
// 8764), or only the one the configuration names. Both are behind one
// Session: Setup subscribes and returns the records there now, Events
// delivers every change after it. The watcher of the user's other hosts
// and `btmm-client browse` use it.
package subscribe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/discover"
	"github.com/openbtmm/btmm/client/dnspush"
	"github.com/openbtmm/btmm/client/llq"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// The mechanisms, as the configuration's push setting names them.
const (
	Auto    = "auto"
	DNSPush = "dns-push"
	LLQ     = "llq"
)

// Event is a change to one name and type: records added and removed.
type Event struct {
	Name    string
	Qtype   uint16
	Added   []dns.RR
	Removed []dns.RR
}

// Sub is one subscription.
type Sub interface {
	Name() string
	Cancel(ctx context.Context) error
}

// Session is one connection to the server with the subscriptions on it.
type Session interface {
	// Setup subscribes to name and type and returns the records there
	// now; later changes come on Events.
	Setup(ctx context.Context, name string, qtype uint16) (Sub, []dns.RR, error)
	// Events delivers the changes, in the order the server sent them.
	Events() <-chan Event
	// Done is closed when the connection ends; Err says why.
	Done() <-chan struct{}
	Err() error
	// Maintain is called about once a minute: LLQs are refreshed before
	// their leases end; DNS Push needs nothing.
	Maintain(ctx context.Context) error
	Close() error
	// Mode is DNSPush or LLQ; Server the server's address and network.
	Mode() string
	Server() string
}

// Config says how to reach the server. Resolver, Zone and Key are
// required.
type Config struct {
	Resolver  *discover.Resolver
	Zone      string      // members.example.com.
	Key       keyfile.Key // the user's key; its name is the user's domain
	Transport string      // "tls" (default), "tcp" or "udp"
	TLS       *tls.Config
	Lease     time.Duration // asked for each LLQ
	// Push is Auto (the default), DNSPush or LLQ. DNS Push needs
	// transport "tls"; with another, Auto means LLQ.
	Push string
	// Server, if set, is the LLQ server's host:port (no discovery, no DNS
	// Push).
	Server string
	Logf   func(string, ...any)
}

// ErrNotOffered wraps discover.ErrNotOffered: the server offers neither
// mechanism allowed (the caller may poll).
var ErrNotOffered = discover.ErrNotOffered

// Dial opens a session by DNS Push where cfg allows it and the server
// offers it, else by LLQ.
func Dial(ctx context.Context, cfg Config) (Session, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	mode := cfg.Push
	if mode == "" {
		mode = Auto
	}
	transport := cfg.Transport
	if transport == "" {
		transport = discover.TransportTLS
	}
	if mode != LLQ && cfg.Server == "" && transport == discover.TransportTLS {
		rt, err := cfg.Resolver.RouteTo(ctx, discover.Push, cfg.Key.Name, cfg.Zone, transport, "", cfg.TLS)
		switch {
		case err == nil:
			sess, err := dialPush(ctx, cfg, rt)
			if err == nil || mode == DNSPush {
				return sess, err
			}
			// Offered but out of reach (a firewall on its port, say):
			// LLQ, if that is offered.
			cfg.Logf("subscribe: %v; trying LLQ", err)
		case errors.Is(err, discover.ErrNotOffered) && mode == Auto:
			// LLQ then.
		default:
			return nil, err
		}
	} else if mode == DNSPush {
		return nil, fmt.Errorf("subscribe: DNS Push needs transport %q and discovery, not %q", discover.TransportTLS, transport)
	}
	return dialLLQ(ctx, cfg)
}

// llqSession is a Session over an llq.Client.
type llqSession struct {
	c      *llq.Client
	server string
	events chan Event

	mu   sync.Mutex
	llqs map[*llq.LLQ]bool // live ones, for Maintain
}

func dialLLQ(ctx context.Context, cfg Config) (Session, error) {
	lc := llq.Config{Lease: cfg.Lease, Logf: cfg.Logf, Key: &keyfile.Key{Name: cfg.Key.Name, Algorithm: cfg.Key.Algorithm, Secret: cfg.Key.Secret}}
	rt, err := cfg.Resolver.RouteTo(ctx, discover.LLQ, cfg.Key.Name, cfg.Zone, cfg.Transport, cfg.Server, cfg.TLS)
	if err != nil {
		return nil, err
	}
	lc.Server, lc.Network, lc.TLS = rt.Addr, rt.Network, rt.TLS
	c, err := llq.Dial(ctx, lc)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", lc.Server, err)
	}
	s := &llqSession{c: c, server: lc.Network + "://" + lc.Server, events: make(chan Event, 64), llqs: map[*llq.LLQ]bool{}}
	go func() {
		defer close(s.events)
		for ev := range c.Events() {
			select {
			case s.events <- Event{Name: ev.Name, Qtype: ev.Qtype, Added: ev.Added, Removed: ev.Removed}:
			case <-c.Done():
				return
			}
		}
	}()
	return s, nil
}

type llqSub struct {
	s *llqSession
	l *llq.LLQ
}

func (u llqSub) Name() string { return u.l.Name() }

func (u llqSub) Cancel(ctx context.Context) error {
	u.s.mu.Lock()
	delete(u.s.llqs, u.l)
	u.s.mu.Unlock()
	return u.l.Cancel(ctx)
}

// Setup returns a SetupError from package llq when the server refuses.
func (s *llqSession) Setup(ctx context.Context, name string, qtype uint16) (Sub, []dns.RR, error) {
	l, rrs, err := s.c.Setup(ctx, name, qtype)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	s.llqs[l] = true
	s.mu.Unlock()
	return llqSub{s, l}, rrs, nil
}

func (s *llqSession) Events() <-chan Event  { return s.events }
func (s *llqSession) Done() <-chan struct{} { return s.c.Done() }
func (s *llqSession) Err() error            { return s.c.Err() }
func (s *llqSession) Close() error          { return s.c.Close() }
func (s *llqSession) Mode() string          { return LLQ }
func (s *llqSession) Server() string        { return s.server }

// Maintain refreshes the LLQs at 80 % of their lease (RFC 8764 §7).
func (s *llqSession) Maintain(ctx context.Context) error {
	s.mu.Lock()
	var all []*llq.LLQ
	for l := range s.llqs {
		all = append(all, l)
	}
	s.mu.Unlock()
	for _, l := range all {
		if time.Until(l.Expires()) < l.Lease()/5 {
			if err := l.Refresh(ctx); err != nil {
				return fmt.Errorf("refreshing %s: %w", l.Name(), err)
			}
		}
	}
	return nil
}

// pushSession is a Session over a DNS Push session.
type pushSession struct {
	s      *dnspush.Session
	server string
	events chan Event
}

func dialPush(ctx context.Context, cfg Config, rt discover.Route) (Session, error) {
	k := cfg.Key
	s, err := dnspush.Dial(ctx, dnspush.Config{Server: rt.Addr, TLS: rt.TLS, Key: &k})
	if err != nil {
		return nil, fmt.Errorf("DNS Push to %s: %w", rt.Addr, err)
	}
	ps := &pushSession{s: s, server: "dns-push://" + rt.Addr, events: make(chan Event, 64)}
	go ps.read()
	return ps, nil
}

// read turns each PUSH into events, one per name and type, in order.
func (p *pushSession) read() {
	defer close(p.events)
	for push := range p.s.Pushes() {
		for _, ev := range Split(push) {
			select {
			case p.events <- ev:
			case <-p.s.Done():
				return
			}
		}
	}
}

// Split groups a PUSH's changes by name and type, in the order each group
// first appears.
func Split(push dnspush.Push) []Event {
	var out []Event
	find := func(rr dns.RR) *Event {
		name, t := dns.CanonicalName(rr.Header().Name), rr.Header().Rrtype
		for i := range out {
			if out[i].Name == name && out[i].Qtype == t {
				return &out[i]
			}
		}
		out = append(out, Event{Name: name, Qtype: t})
		return &out[len(out)-1]
	}
	// A PUSH lists its changes in order; removals and additions of the same
	// record in one PUSH are rare, and an Event applies removals first.
	for _, rr := range push.Removed {
		e := find(rr)
		e.Removed = append(e.Removed, rr)
	}
	for _, rr := range push.Added {
		e := find(rr)
		e.Added = append(e.Added, rr)
	}
	return out
}

type pushSub struct {
	s    *pushSession
	id   uint16
	name string
}

func (u pushSub) Name() string                 { return u.name }
func (u pushSub) Cancel(context.Context) error { return u.s.s.Unsubscribe(u.id) }

// Setup subscribes, then asks the records there now on the same session:
// the initial PUSH and every change after the SUBSCRIBE also arrive on
// Events, and applied in order onto the answer they give the same result
// (adding a record that is there, or removing one that is not, changes
// nothing).
func (p *pushSession) Setup(ctx context.Context, name string, qtype uint16) (Sub, []dns.RR, error) {
	id, err := p.s.Subscribe(ctx, name, qtype)
	if err != nil {
		return nil, nil, err
	}
	r, err := p.s.Query(ctx, name, qtype)
	if err != nil {
		return nil, nil, err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, nil, fmt.Errorf("asking %s %s: %s", name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode])
	}
	var rrs []dns.RR
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == qtype || qtype == dns.TypeANY {
			rrs = append(rrs, rr)
		}
	}
	return pushSub{p, id, dns.CanonicalName(name)}, rrs, nil
}

func (p *pushSession) Events() <-chan Event           { return p.events }
func (p *pushSession) Done() <-chan struct{}          { return p.s.Done() }
func (p *pushSession) Err() error                     { return p.s.Err() }
func (p *pushSession) Close() error                   { return p.s.Close() }
func (p *pushSession) Mode() string                   { return DNSPush }
func (p *pushSession) Server() string                 { return p.server }
func (p *pushSession) Maintain(context.Context) error { return nil }

// Apply removes ev's removed records from rrs and adds its added ones,
// without duplicates.
func Apply(rrs []dns.RR, ev Event) []dns.RR {
	out := rrs[:0:0]
	for _, rr := range rrs {
		gone := false
		for _, r := range ev.Removed {
			if dns.IsDuplicate(rr, r) {
				gone = true
				break
			}
		}
		if !gone {
			out = append(out, rr)
		}
	}
	for _, r := range ev.Added {
		dup := false
		for _, rr := range out {
			if dns.IsDuplicate(rr, r) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, r)
		}
	}
	return out
}
