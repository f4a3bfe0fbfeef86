package llq

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/keyrate"
	"github.com/openbtmm/btmm/plugin/pkg/members"
	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// Zone is what the LLQ server needs of the zone it watches.
type Zone = members.Zone

// policy is the part of the configuration that a reload may change.
type policy struct {
	zone         Zone
	min, max     time.Duration
	tsigRequired bool
	limit        int // live LLQs per key, or per address for unsigned ones
	// setups bounds the setups per second of each key (or address): a
	// flood of them from one user costs little and leaves the others be.
	setups *keyrate.Limiter
}

// Server is the LLQ server: its listeners, the live LLQs and the watch on
// the store. It outlives Corefile reloads (see servers in setup.go),
// so that a reload neither drops LLQs nor needs their clients to notice.
type Server struct {
	policy atomic.Pointer[policy]
	now    func() time.Time

	raw *rawdns.Server // the listeners

	// mu guards following.
	mu     sync.Mutex
	t      *table
	conns  map[*rawdns.Conn]*conn // those that sent a message
	closed bool

	stop  chan struct{}
	wg    sync.WaitGroup
	watch *store.Subscription // the feed of the store the LLQs watch
}

// Retransmission of events (RFC 8764 §6.3): resend after 2 s, again after
// 4 more, then wait 8 s; then the client is gone and the LLQ with it.
var resendAfter = []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second}

const (
	// retryAfter is the LLQ-LEASE of a SERV-FULL answer: when to try again.
	retryAfter = 60
	// maxPending bounds the events awaiting acknowledgement per LLQ; a
	// client that falls this far behind is dropped rather than queued for.
	maxPending = 32
	// feedQueue is the change feed's buffer; see watchStore for overflow.
	feedQueue = 4096
	// maxUDP is the largest event sent in one UDP datagram; larger ones are
	// split. 1232 octets passes every path (DNS flag day 2020).
	maxUDP = 1232
)

func newServer(now func() time.Time) *Server {
	return &Server{now: now, t: newTable(), conns: make(map[*rawdns.Conn]*conn), stop: make(chan struct{})}
}

// setPolicy installs p, and moves the watch to p's store if it changed.
func (s *Server) setPolicy(p *policy) {
	old := s.policy.Swap(p)
	if old != nil && old.zone.Store() == p.zone.Store() {
		return
	}
	sub := p.zone.Store().Subscribe(feedQueue)
	s.mu.Lock()
	prev := s.watch
	s.watch = sub
	s.mu.Unlock()
	if prev != nil {
		prev.Close()
	}
	s.wg.Add(1)
	go s.watchStore(sub)
}

// watchStore turns the store's committed changes into events.
func (s *Server) watchStore(sub *store.Subscription) {
	defer s.wg.Done()
	for ev := range sub.C {
		s.changed(ev)
	}
	if errors.Is(sub.Err(), store.ErrLagged) {
		// Events were missed, so any LLQ may be stale. Ending them all is
		// the honest answer: TCP clients see their connection close and
		// set up again at once, UDP clients at their next refresh, and
		// both get the current answers.
		log.Errorf("fell behind the store's changes; ending every LLQ so that clients set up again")
		s.dropAll()
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if !closed {
			s.setPolicyForce()
		}
	}
}

func (s *Server) setPolicyForce() {
	p := s.policy.Load()
	sub := p.zone.Store().Subscribe(feedQueue)
	s.mu.Lock()
	s.watch = sub
	s.mu.Unlock()
	s.wg.Add(1)
	go s.watchStore(sub)
}

// dropAll ends every LLQ and closes every connection that has sent one
// (the others hold none).
func (s *Server) dropAll() {
	s.mu.Lock()
	for _, l := range s.t.byID {
		s.t.remove(l)
	}
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	liveLLQs.Set(0)
}

// Close stops the listeners, ends every connection and LLQ, and waits for
// the server's goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	watch := s.watch
	s.mu.Unlock()
	close(s.stop)
	if s.raw != nil {
		s.raw.Close()
	}
	if watch != nil {
		watch.Close()
	}
	s.dropAll()
	s.wg.Wait()
	return nil
}

// newID returns an unpredictable LLQ-ID that no live LLQ has (RFC 8764
// §5.2.2, §8.3); never 0, which means "none".
func (s *Server) newIDLocked() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		id := binary.BigEndian.Uint64(b[:])
		if _, used := s.t.byID[id]; id != 0 && !used {
			return id
		}
	}
}

// randomMsgID returns an unpredictable DNS message ID for an event.
func randomMsgID() uint16 {
	var b [2]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint16(b[:])
}

// clamp bounds an asked lease into the policy's.
func (p *policy) clamp(asked uint32) uint32 {
	d := min(max(time.Duration(asked)*time.Second, p.min), p.max)
	return uint32(d / time.Second)
}

// sweepLoop ends the LLQs whose lease has run out, each second: the
// expiry heap hands it those and no others, so a second with nothing
// expiring costs nothing however many LLQs there are.
func (s *Server) sweepLoop() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			now := s.now()
			s.mu.Lock()
			if s.t.removeExpired(now) > 0 {
				liveLLQs.Set(float64(len(s.t.byID)))
			}
			s.mu.Unlock()
		}
	}
}

// origin is where a message came from and how to answer it.
type origin struct {
	addr netip.AddrPort // the client's address and port
	conn *conn          // its connection, nil for UDP
}

func (o origin) String() string {
	if o.conn != nil {
		return fmt.Sprintf("tcp %s", o.addr)
	}
	return fmt.Sprintf("udp %s", o.addr)
}

// send writes a packed message to o.
func (s *Server) send(o origin, b []byte) error {
	if o.conn != nil {
		return o.conn.write(b)
	}
	return s.raw.WriteUDP(b, o.addr)
}
