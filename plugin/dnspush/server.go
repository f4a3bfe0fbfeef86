// Package dnspush implements the dns-push plugin: DNS Push Notifications
// (RFC 8765) over DNS Stateful Operations sessions (RFC 8490) on TLS, a
// second way beside LLQ for clients to hear of changes in the members
// zone, from the same store and change feed.
package dnspush

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/dso"
	"github.com/openbtmm/btmm/plugin/pkg/members"
	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// policy is what a server block says; a reload swaps it whole.
type policy struct {
	zone         members.Zone
	tsigRequired bool
	limit        int // subscriptions per key (or per session, unsigned)
	keepalive    time.Duration
	inactivity   time.Duration
}

// feedQueue is how many store events may wait for the server before it
// counts as fallen behind.
const feedQueue = 4096

// Server is the DNS Push server of one set of listeners.
type Server struct {
	raw    *rawdns.Server
	policy atomic.Pointer[policy]

	// mu guards the sessions and the subscription index.
	mu       sync.Mutex
	sessions map[*rawdns.Conn]*session
	byQ      map[qkey]map[*subscription]struct{}
	byOwner  map[string]int // subscriptions per key name (or session, unsigned)
	watch    *store.Subscription
	closed   bool

	wg sync.WaitGroup
}

// qkey is what a change is matched on: a name (lowercase, fully qualified)
// and a type (dns.TypeANY matches every type).
type qkey struct {
	name  string
	qtype uint16
}

// subscription is one live SUBSCRIBE.
type subscription struct {
	id    uint16 // the SUBSCRIBE's message ID, which UNSUBSCRIBE names
	q     qkey
	s     *session
	owner string // what it counts against (session.owner)
}

func listen(a rawdns.Addrs, p *policy) (*Server, error) {
	raw, err := rawdns.Listen(a)
	if err != nil {
		return nil, err
	}
	s := &Server{raw: raw, sessions: make(map[*rawdns.Conn]*session), byQ: make(map[qkey]map[*subscription]struct{}), byOwner: make(map[string]int)}
	// A client must send something at least every keepalive interval;
	// after twice that with nothing read, the session is dead (RFC 8490
	// §6.5.2).
	raw.IdleTimeout = 2 * p.keepalive
	raw.ConnClosed = s.connClosed
	s.setPolicy(p)
	raw.Serve(s.serve)
	return s, nil
}

// setPolicy installs p, and follows its zone's store.
func (s *Server) setPolicy(p *policy) {
	old := s.policy.Swap(p)
	if old != nil && old.zone.Store() == p.zone.Store() {
		return
	}
	s.follow(p.zone.Store())
}

// follow subscribes to st's change feed, instead of any before.
func (s *Server) follow(st store.Store) {
	sub := st.Subscribe(feedQueue)
	s.mu.Lock()
	old := s.watch
	s.watch = sub
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
	s.wg.Add(1)
	go s.watchStore(sub)
}

// watchStore turns the store's committed changes into PUSHes.
func (s *Server) watchStore(sub *store.Subscription) {
	defer s.wg.Done()
	for ev := range sub.C {
		if len(ev.Users) > 0 {
			s.usersChanged(ev.Users)
		}
		s.changed(ev)
	}
	if errors.Is(sub.Err(), store.ErrLagged) {
		// Changes were missed: every subscription may be stale. Closing
		// the sessions makes their clients subscribe again, and get the
		// current records in the initial PUSH.
		log.Errorf("fell behind the store's changes; closing every session so that clients subscribe again")
		s.closeAll("lagged")
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if !closed {
			s.follow(s.policy.Load().zone.Store())
		}
	}
}

// changed sends each session the changes its subscriptions match, in one
// PUSH (or more, for a large change).
func (s *Server) changed(ev store.Event) {
	bySession := make(map[*session][]dso.Change)
	var order []*session
	s.mu.Lock()
	for _, c := range ev.Changes {
		add := func(rr dns.RR, remove bool) {
			t := rr.Header().Rrtype
			subs := []map[*subscription]struct{}{s.byQ[qkey{c.Name, t}], s.byQ[qkey{c.Name, dns.TypeANY}]}
			if len(subs[0])+len(subs[1]) == 0 {
				return
			}
			// Packed once, for every session it goes to.
			pack := dso.AddChange
			if remove {
				pack = dso.RemoveChange
			}
			ch, err := pack(rr)
			if err != nil {
				log.Errorf("packing a change of %s: %v", c.Name, err)
				return
			}
			for _, set := range subs {
				for sub := range set {
					if _, ok := bySession[sub.s]; !ok {
						order = append(order, sub.s)
					}
					bySession[sub.s] = append(bySession[sub.s], ch)
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
	for _, ss := range order {
		ss.mu.Lock()
		ss.push(bySession[ss])
		ss.mu.Unlock()
	}
}

// usersChanged closes the sessions that proved a key its user may no
// longer sign with (revoked, or replaced and past its overlap).
func (s *Server) usersChanged(names []string) {
	p := s.policy.Load()
	changed := make(map[string]bool, len(names))
	for _, n := range names {
		changed[n] = true
	}
	s.mu.Lock()
	all := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	// Lock order: a session's mutex, then the server's; never the other
	// way, so identity is read with s.mu released.
	var end []*session
	for _, ss := range all {
		if key, tag := ss.identity(); key != "" && changed[key] {
			if _, ok := members.KeyByTag(p.zone, key, tag); !ok {
				end = append(end, ss)
			}
		}
	}
	for _, ss := range end {
		ss.close("revoked")
	}
	if len(end) > 0 {
		log.Infof("closed %d sessions whose key was revoked or replaced", len(end))
	}
}

func (s *Server) closeAll(reason string) {
	s.mu.Lock()
	all := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	for _, ss := range all {
		ss.close(reason)
	}
}

// serve handles one message of a connection; rawdns serves a
// connection's messages one at a time, in order.
func (s *Server) serve(msg []byte, from *rawdns.Source) {
	ss := s.sessionOf(from.Conn())
	if ss == nil {
		return
	}
	if dso.IsDSO(msg) {
		ss.handleDSO(msg)
		return
	}
	ss.handleQuery(msg)
}

// sessionOf returns the state of connection rc, made at its first
// message.
func (s *Server) sessionOf(rc *rawdns.Conn) *session {
	if rc == nil {
		return nil // no datagrams: DSO needs a stream (RFC 8490 §4.2)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	ss, ok := s.sessions[rc]
	if !ok {
		ss = newSession(s, rc)
		s.sessions[rc] = ss
		liveSessions.Set(float64(len(s.sessions)))
	}
	return ss
}

// connClosed forgets a connection and its subscriptions.
func (s *Server) connClosed(rc *rawdns.Conn, err error) {
	if err != nil {
		log.Debugf("TLS handshake: %v", err)
	}
	s.mu.Lock()
	ss := s.sessions[rc]
	delete(s.sessions, rc)
	liveSessions.Set(float64(len(s.sessions)))
	if ss != nil {
		for _, sub := range ss.subs {
			s.removeLocked(sub)
		}
		ss.subs = nil
	}
	s.mu.Unlock()
	if ss != nil {
		ss.stopTimer()
	}
}

// removeLocked takes sub out of the index; s.mu is held.
func (s *Server) removeLocked(sub *subscription) {
	set := s.byQ[sub.q]
	delete(set, sub)
	if len(set) == 0 {
		delete(s.byQ, sub.q)
	}
	if s.byOwner[sub.owner]--; s.byOwner[sub.owner] <= 0 {
		delete(s.byOwner, sub.owner)
	}
	liveSubscriptions.Dec()
}

// Close stops the listeners and ends every session.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	watch := s.watch
	s.mu.Unlock()
	err := s.raw.Close()
	if watch != nil {
		watch.Close()
	}
	s.wg.Wait()
	return err
}
