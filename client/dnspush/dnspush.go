// Package dnspush is a DNS Push Notifications client (RFC 8765): one DSO
// session (RFC 8490) over TLS to a server, on which the client proves its
// user with a TSIG-signed query and then subscribes to names; the server
// pushes every change.
//
// A Session reads on a goroutine of its own: responses go to the request
// waiting for them, PUSH messages to Pushes, and the session sends a
// Keepalive request every half interval the server set, so that a quiet
// session is not taken for a dead one.
package dnspush

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/dso"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

// Config is how to reach a server.
type Config struct {
	Server string      // host:port
	TLS    *tls.Config // nil for plain TCP (a server behind a TLS proxy, tests)
	// Key, if set, is proven at once with a signed SOA query of its name,
	// so that the server lets the session subscribe to the key's names.
	Key *keyfile.Key
	// Pushes is the capacity of Pushes (default 256); a reader that falls
	// further behind ends the session (ErrSlow).
	Pushes int
}

// Push is one PUSH message: the records added and those removed (a
// collective removal is given as a record with no data, of the type and
// class removed, ANY for all).
type Push struct {
	Added, Removed []dns.RR
}

// RefusedError is a SUBSCRIBE the server answered with an error.
type RefusedError struct {
	Rcode      int
	RetryDelay time.Duration // 0 when the server gave none
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("dnspush: SUBSCRIBE refused: %s (retry after %v)", rcodeName(e.Rcode), e.RetryDelay)
}

func rcodeName(r int) string {
	if r == dso.RcodeDSOTypeNI {
		return "DSOTYPENI"
	}
	return dns.RcodeToString[r]
}

// ErrSlow ends a session whose reader did not keep up with Pushes.
var ErrSlow = errors.New("dnspush: pushes not read fast enough")

// Session is one DSO session.
type Session struct {
	key    *keyfile.Key
	c      net.Conn
	pushes chan Push
	wmu    sync.Mutex

	mu      sync.Mutex
	waiting map[uint16]chan *dso.Message
	nextID  uint16
	err     error
	done    chan struct{}
}

// Dial opens a session: it connects, starts the session with a Keepalive
// request, learns the server's interval, and proves cfg.Key if set.
func Dial(ctx context.Context, cfg Config) (*Session, error) {
	d := net.Dialer{}
	var c net.Conn
	var err error
	if cfg.TLS != nil {
		c, err = (&tls.Dialer{NetDialer: &d, Config: cfg.TLS}).DialContext(ctx, "tcp", cfg.Server)
	} else {
		c, err = d.DialContext(ctx, "tcp", cfg.Server)
	}
	if err != nil {
		return nil, err
	}
	n := cfg.Pushes
	if n <= 0 {
		n = 256
	}
	s := &Session{key: cfg.Key, c: c, pushes: make(chan Push, n), waiting: make(map[uint16]chan *dso.Message), done: make(chan struct{})}
	go s.read()
	if err := s.start(ctx, cfg); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Session) start(ctx context.Context, cfg Config) error {
	r, err := s.request(ctx, dso.Keepalive{Inactivity: 0xFFFFFFFF, Interval: 0xFFFFFFFF}.TLV())
	if err != nil {
		return err
	}
	prim, ok := r.Primary()
	if r.Rcode != 0 || !ok || prim.Type != dso.TypeKeepalive {
		return fmt.Errorf("dnspush: the server answered the Keepalive %s", rcodeName(r.Rcode))
	}
	k, err := dso.ParseKeepalive(prim.Data)
	if err != nil {
		return err
	}
	go s.keepalive(time.Duration(k.Interval) * time.Millisecond)
	if cfg.Key != nil {
		return s.prove(ctx, *cfg.Key)
	}
	return nil
}

// prove sends the SOA query of k's name signed with k, and checks the
// signed answer.
func (s *Session) prove(ctx context.Context, k keyfile.Key) error {
	r, err := s.query(ctx, k.Name, dns.TypeSOA, &k)
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("dnspush: the server did not take key %s: %s", k.Name, dns.RcodeToString[r.Rcode])
	}
	return nil
}

// Query asks the server an ordinary DNS query on the session (RFC 8490
// §5.4 lets a session carry them), signed with the session's key if it
// has one (and the signed reply checked), and returns the reply. A
// SUBSCRIBE followed by a Query gives the records there now, and every
// change after the SUBSCRIBE in Pushes.
func (s *Session) Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	return s.query(ctx, dns.Fqdn(name), qtype, s.key)
}

func (s *Session) query(ctx context.Context, name string, qtype uint16, k *keyfile.Key) (*dns.Msg, error) {
	m := new(dns.Msg).SetQuestion(name, qtype)
	m.Id = s.newID()
	var b []byte
	var mac string
	var err error
	if k != nil {
		m.SetTsig(k.Name, k.Algorithm, 300, time.Now().Unix())
		b, mac, err = dns.TsigGenerateWithProvider(m, tsigauth.HMAC(k.Secret), "", false)
	} else {
		b, err = m.Pack()
	}
	if err != nil {
		return nil, err
	}
	ch := s.await(m.Id)
	if err := s.write(b); err != nil {
		return nil, err
	}
	var raw []byte
	select {
	case r := <-ch:
		raw = r.TLVs[0].Data // see read: a plain reply rides as one TLV
	case <-s.done:
		return nil, s.Err()
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.waiting, m.Id)
		s.mu.Unlock()
		return nil, ctx.Err()
	}
	r := new(dns.Msg)
	if err := r.Unpack(raw); err != nil {
		return nil, err
	}
	if k != nil {
		if r.IsTsig() == nil {
			return nil, fmt.Errorf("dnspush: the reply to %s %s is not signed (%s)", name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode])
		}
		if err := tsigauth.VerifyReply(raw, k.Secret, mac); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Subscribe subscribes to name and type (dns.TypeANY for all) and returns
// the subscription's ID, for Unsubscribe. The records there now follow in
// a Push.
func (s *Session) Subscribe(ctx context.Context, name string, qtype uint16) (uint16, error) {
	tlv, err := dso.Subscribe(dso.Question{Name: dns.Fqdn(name), Type: qtype, Class: dns.ClassINET})
	if err != nil {
		return 0, err
	}
	r, err := s.request(ctx, tlv)
	if err != nil {
		return 0, err
	}
	if r.Rcode != 0 {
		e := &RefusedError{Rcode: r.Rcode}
		for _, t := range r.TLVs {
			if ms, err := dso.ParseRetryDelay(t.Data); err == nil && t.Type == dso.TypeRetryDelay {
				e.RetryDelay = time.Duration(ms) * time.Millisecond
			}
		}
		return 0, e
	}
	return r.ID, nil
}

// Unsubscribe ends the subscription with ID id.
func (s *Session) Unsubscribe(id uint16) error {
	b, _ := (&dso.Message{TLVs: []dso.TLV{dso.Unsubscribe(id)}}).Pack()
	return s.write(b)
}

// Pushes delivers the changes the server pushes, in order; it is closed
// when the session ends.
func (s *Session) Pushes() <-chan Push { return s.pushes }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why the session ended, once Done is closed.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the session.
func (s *Session) Close() error {
	s.end(errors.New("dnspush: closed"))
	return nil
}

func (s *Session) end(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
		s.c.Close()
	}
	s.mu.Unlock()
}

func (s *Session) newID() uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		s.nextID++
		if _, busy := s.waiting[s.nextID]; s.nextID != 0 && !busy {
			return s.nextID
		}
	}
}

func (s *Session) await(id uint16) chan *dso.Message {
	ch := make(chan *dso.Message, 1)
	s.mu.Lock()
	s.waiting[id] = ch
	s.mu.Unlock()
	return ch
}

// request sends a DSO request and waits for its response.
func (s *Session) request(ctx context.Context, tlvs ...dso.TLV) (*dso.Message, error) {
	id := s.newID()
	ch := s.await(id)
	b, err := (&dso.Message{ID: id, TLVs: tlvs}).Pack()
	if err != nil {
		return nil, err
	}
	if err := s.write(b); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-s.done:
		return nil, s.Err()
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.waiting, id)
		s.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (s *Session) write(b []byte) error {
	buf := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(b)), uint16(len(b)))
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := s.c.Write(append(buf, b...))
	return err
}

// keepalive sends a Keepalive request every half interval until the
// session ends.
func (s *Session) keepalive(interval time.Duration) {
	if interval <= 0 || interval > 24*time.Hour {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), interval/2)
			s.request(ctx, dso.Keepalive{Inactivity: 0xFFFFFFFF, Interval: 0xFFFFFFFF}.TLV())
			cancel()
		}
	}
}

// read reads until the connection ends. A plain DNS reply (to prove) is
// handed to its waiter as a message whose one TLV holds the reply's
// octets.
func (s *Session) read() {
	defer func() {
		s.end(io.EOF)
		close(s.done)
		close(s.pushes)
	}()
	var hdr [2]byte
	for {
		if _, err := io.ReadFull(s.c, hdr[:]); err != nil {
			s.end(err)
			return
		}
		b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(s.c, b); err != nil {
			s.end(err)
			return
		}
		if !dso.IsDSO(b) {
			if len(b) >= 2 {
				s.deliver(&dso.Message{ID: binary.BigEndian.Uint16(b), Response: true, TLVs: []dso.TLV{{Data: b}}})
			}
			continue
		}
		m, err := dso.Parse(b)
		if err != nil {
			s.end(err)
			return
		}
		if m.Response {
			s.deliver(m)
			continue
		}
		prim, _ := m.Primary()
		switch {
		case prim.Type == dso.TypePush && m.Unidirectional():
			p, err := toPush(prim.Data)
			if err != nil {
				s.end(err)
				return
			}
			select {
			case s.pushes <- p:
			default:
				s.end(ErrSlow)
				return
			}
		case prim.Type == dso.TypeRetryDelay && m.Unidirectional():
			ms, _ := dso.ParseRetryDelay(prim.Data)
			s.end(fmt.Errorf("dnspush: the server asked to close and wait %v", time.Duration(ms)*time.Millisecond))
			return
		}
	}
}

func (s *Session) deliver(m *dso.Message) {
	s.mu.Lock()
	ch, ok := s.waiting[m.ID]
	delete(s.waiting, m.ID)
	s.mu.Unlock()
	if ok {
		ch <- m
	}
}

func toPush(data []byte) (Push, error) {
	changes, err := dso.ParsePush(data)
	if err != nil {
		return Push{}, err
	}
	var p Push
	for _, c := range changes {
		rr, err := c.RR()
		if err != nil {
			return Push{}, err
		}
		switch c.TTL {
		case dso.TTLRemove, dso.TTLCollectiveRemove:
			rr.Header().Ttl = 0
			p.Removed = append(p.Removed, rr)
		default:
			p.Added = append(p.Added, rr)
		}
	}
	return p, nil
}
