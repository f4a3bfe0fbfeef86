// Package browse lists the services (RFC 6763) published in a user's
// domain, live: it subscribes (package subscribe: DNS Push or LLQ) to the
// service-type enumeration or one type's list, to each instance's SRV and
// TXT records, and reports each instance as it appears, changes and goes.
// It is `btmm-client browse`.
package browse

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/backoff"
	"github.com/openbtmm/btmm/client/dnssd"
	"github.com/openbtmm/btmm/client/subscribe"
)

// Instance is one service instance, resolved.
type Instance struct {
	Name     string   `json:"name"`     // desktop._ssh._tcp.alice.members.example.com.
	Instance string   `json:"instance"` // desktop
	Type     string   `json:"type"`     // _ssh._tcp
	Target   string   `json:"target"`   // desktop.alice.members.example.com.
	Port     uint16   `json:"port"`
	TXT      []string `json:"txt"`
}

func (a Instance) equal(b Instance) bool {
	return a.Name == b.Name && a.Target == b.Target && a.Port == b.Port && slices.Equal(a.TXT, b.TXT)
}

// Change is an instance that appeared (Added) or went.
type Change struct {
	Added bool
	Instance
}

// String is the line `btmm-client browse` prints: "+" for an instance
// that appeared or "-" for one that went, its instance name, type,
// target:port and TXT strings, such as
// "+ desktop  _http._tcp  desktop.alice.members.example.com.:8080  path=/".
func (c Change) String() string {
	sign := "-"
	if c.Added {
		sign = "+"
	}
	s := fmt.Sprintf("%s %s  %s  %s:%d", sign, c.Instance.Instance, c.Type, c.Target, c.Port)
	if txt := TXTString(c.TXT); txt != "" {
		s += "  " + txt
	}
	return s
}

// TXTString shows TXT strings space-separated, quoting those with spaces
// or quotes; the single empty string of a TXT with no pairs shows as "".
func TXTString(txt []string) string {
	var out []string
	for _, t := range txt {
		if t == "" && len(txt) == 1 {
			return ""
		}
		if t == "" || strings.ContainsAny(t, " \t\"\\") {
			t = fmt.Sprintf("%q", t)
		}
		out = append(out, t)
	}
	return strings.Join(out, " ")
}

// Browser follows one user's services. Its methods are for one goroutine.
type Browser struct {
	domain string
	typ    string // one type ("_ssh._tcp"), or "" for every type
	report func(Change)

	// shown is what was reported as present, by instance name; it
	// outlives sessions, so that a new one reports only differences.
	shown map[string]Instance

	// The current session's state.
	sess      subscribe.Session
	enumSub   subscribe.Sub
	types     map[string]*typeState     // by TYPE.DOMAIN
	instances map[string]*instanceState // by instance name
}

type typeState struct {
	typ   string
	sub   subscribe.Sub
	ptrs  []dns.RR
	names map[string]bool // instance names
}

type instanceState struct {
	name, instance, typ string
	subs                []subscribe.Sub
	srv, txt            []dns.RR
}

// New returns a browser of domain's services of type typ (as ParseType
// gives it), or of every type if typ is "". report is called for every
// change.
func New(domain, typ string, report func(Change)) *Browser {
	return &Browser{domain: dns.CanonicalName(domain), typ: typ, report: report, shown: map[string]Instance{}}
}

// Sync sets the subscriptions up on a new session and reports the
// differences from what was reported before: every instance at the first
// session, then what changed while no session was up.
func (b *Browser) Sync(ctx context.Context, sess subscribe.Session) error {
	b.sess, b.enumSub = sess, nil
	b.types, b.instances = map[string]*typeState{}, map[string]*instanceState{}
	if b.typ != "" {
		if err := b.addType(ctx, dnssd.TypeName(b.typ, b.domain)); err != nil {
			return err
		}
	} else {
		sub, rrs, err := sess.Setup(ctx, dnssd.ServicesDomain(b.domain), dns.TypePTR)
		if err != nil {
			return fmt.Errorf("browse: %s: %w", dnssd.ServicesDomain(b.domain), err)
		}
		b.enumSub = sub
		for _, rr := range rrs {
			if p, ok := rr.(*dns.PTR); ok {
				if err := b.addType(ctx, dns.CanonicalName(p.Ptr)); err != nil {
					return err
				}
			}
		}
	}
	// Gone while there was no session.
	for _, name := range slices.Sorted(maps.Keys(b.shown)) {
		if _, ok := b.instances[name]; !ok {
			b.gone(name)
		}
	}
	return nil
}

// Apply takes one event of the session into the state, reporting what
// changed.
func (b *Browser) Apply(ctx context.Context, ev subscribe.Event) error {
	name := dns.CanonicalName(ev.Name)
	switch {
	case b.typ == "" && name == dnssd.ServicesDomain(b.domain) && ev.Qtype == dns.TypePTR:
		for _, rr := range ev.Removed {
			if p, ok := rr.(*dns.PTR); ok {
				b.removeType(ctx, dns.CanonicalName(p.Ptr))
			}
		}
		for _, rr := range ev.Added {
			if p, ok := rr.(*dns.PTR); ok {
				if err := b.addType(ctx, dns.CanonicalName(p.Ptr)); err != nil {
					return err
				}
			}
		}
	case b.types[name] != nil && ev.Qtype == dns.TypePTR:
		t := b.types[name]
		t.ptrs = subscribe.Apply(t.ptrs, ev)
		return b.syncInstances(ctx, t)
	case b.instances[name] != nil:
		in := b.instances[name]
		switch ev.Qtype {
		case dns.TypeSRV:
			in.srv = subscribe.Apply(in.srv, ev)
		case dns.TypeTXT:
			in.txt = subscribe.Apply(in.txt, ev)
		}
		b.evaluate(in)
	}
	return nil
}

// addType starts following a type's list of instances, TYPE.DOMAIN.
func (b *Browser) addType(ctx context.Context, typeName string) error {
	if b.types[typeName] != nil {
		return nil
	}
	if !dns.IsSubDomain(b.domain, typeName) || dns.CountLabel(typeName) != dns.CountLabel(b.domain)+2 {
		return nil // not a type of this domain
	}
	labels := dns.SplitDomainName(typeName)
	t := &typeState{typ: labels[0] + "." + labels[1], names: map[string]bool{}}
	sub, rrs, err := b.sess.Setup(ctx, typeName, dns.TypePTR)
	if err != nil {
		return fmt.Errorf("browse: %s: %w", typeName, err)
	}
	t.sub, t.ptrs = sub, rrs
	b.types[typeName] = t
	return b.syncInstances(ctx, t)
}

func (b *Browser) removeType(ctx context.Context, typeName string) {
	t := b.types[typeName]
	if t == nil {
		return
	}
	delete(b.types, typeName)
	t.sub.Cancel(ctx)
	t.ptrs = nil
	b.syncInstances(ctx, t)
}

// syncInstances follows the instances t's PTRs name, and drops the others.
func (b *Browser) syncInstances(ctx context.Context, t *typeState) error {
	want := map[string]bool{}
	for _, rr := range t.ptrs {
		if p, ok := rr.(*dns.PTR); ok {
			want[dns.CanonicalName(p.Ptr)] = true
		}
	}
	for name := range t.names {
		if !want[name] {
			delete(t.names, name)
			if in := b.instances[name]; in != nil {
				delete(b.instances, name)
				for _, s := range in.subs {
					s.Cancel(ctx)
				}
			}
			b.gone(name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if t.names[name] {
			continue
		}
		inst, typ, ok := dnssd.SplitInstance(name, b.domain)
		if !ok || typ != t.typ {
			continue // not an instance of this type in this domain
		}
		t.names[name] = true
		in := &instanceState{name: name, instance: inst, typ: typ}
		b.instances[name] = in
		for _, qt := range []uint16{dns.TypeSRV, dns.TypeTXT} {
			sub, rrs, err := b.sess.Setup(ctx, name, qt)
			if err != nil {
				return fmt.Errorf("browse: %s %s: %w", name, dns.TypeToString[qt], err)
			}
			in.subs = append(in.subs, sub)
			if qt == dns.TypeSRV {
				in.srv = rrs
			} else {
				in.txt = rrs
			}
		}
		b.evaluate(in)
	}
	return nil
}

// evaluate reports an instance that now has an SRV record, or whose SRV or
// TXT changed (as its old form going and its new one appearing), or
// that lost its SRV record.
func (b *Browser) evaluate(in *instanceState) {
	var srv *dns.SRV
	for _, rr := range in.srv {
		if s, ok := rr.(*dns.SRV); ok && (srv == nil || s.Priority < srv.Priority) {
			srv = s
		}
	}
	if srv == nil {
		b.gone(in.name)
		return
	}
	now := Instance{Name: in.name, Instance: in.instance, Type: in.typ, Target: dns.CanonicalName(srv.Target), Port: srv.Port, TXT: []string{}}
	for _, rr := range in.txt {
		if t, ok := rr.(*dns.TXT); ok {
			for _, x := range t.Txt {
				now.TXT = append(now.TXT, dnssd.UnescapeTXT(x))
			}
		}
	}
	old, shown := b.shown[in.name]
	if shown && old.equal(now) {
		return
	}
	if shown {
		b.report(Change{Added: false, Instance: old})
	}
	b.shown[in.name] = now
	b.report(Change{Added: true, Instance: now})
}

func (b *Browser) gone(name string) {
	if old, ok := b.shown[name]; ok {
		delete(b.shown, name)
		b.report(Change{Added: false, Instance: old})
	}
}

// Shown returns the instances present, sorted by name.
func (b *Browser) Shown() []Instance {
	var out []Instance
	for _, name := range slices.Sorted(maps.Keys(b.shown)) {
		out = append(out, b.shown[name])
	}
	return out
}

// Close cancels the session's subscriptions (LLQs hold state on the
// server until their lease ends otherwise).
func (b *Browser) Close(ctx context.Context) {
	if b.enumSub != nil {
		b.enumSub.Cancel(ctx)
	}
	for _, t := range b.types {
		t.sub.Cancel(ctx)
	}
	for _, in := range b.instances {
		for _, s := range in.subs {
			s.Cancel(ctx)
		}
	}
}

// Run browses until ctx ends (or, with once, until the first session has
// reported what is there): it dials a session, syncs, follows its events,
// and on a lost session dials again (after a second or two) and reports
// only what changed meanwhile.
func Run(ctx context.Context, dial func(context.Context) (subscribe.Session, error), b *Browser, once bool, logf func(string, ...any)) error {
	retry := backoff.Backoff{Min: time.Second, Max: 2 * time.Second}
	for {
		sess, err := dial(ctx)
		if err == nil {
			logf("browse: following %s by %s (%s)", b.domain, sess.Mode(), sess.Server())
			err = b.Sync(ctx, sess)
			if err == nil && once {
				cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				b.Close(cctx)
				cancel()
				sess.Close()
				return nil
			}
			if err == nil {
				retry.Reset()
				err = b.follow(ctx, sess)
			}
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			b.Close(cctx)
			cancel()
			sess.Close()
		}
		if once {
			if err == nil {
				err = ctx.Err()
			}
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := retry.Next()
		logf("browse: %v; again in %v", err, wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// follow applies the session's events until it or ctx ends.
func (b *Browser) follow(ctx context.Context, sess subscribe.Session) error {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sess.Done():
			return fmt.Errorf("session ended: %v", sess.Err())
		case ev, ok := <-sess.Events():
			if !ok {
				return fmt.Errorf("session ended: %v", sess.Err())
			}
			if err := b.Apply(ctx, ev); err != nil {
				return err
			}
		case <-tick.C:
			if err := sess.Maintain(ctx); err != nil {
				return err
			}
		}
	}
}
