package llq

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
)

const (
	host   = "laptop.alice.members.example.com."
	secret = "c2VjcmV0IG9mIHRoaXJ0eS10d28gb2N0ZXRzIGZvciBITUFD" // base64
)

var testKey = &keyfile.Key{Name: "alice.members.example.com.", Algorithm: dns.HmacSHA256, Secret: secret}

// fastRetry stands in for RFC 8764's 2 s, 4 s, 8 s.
var fastRetry = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}

func rr(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// dial connects a client to s with the fast schedule and closes it at
// the end of the test.
func dial(t *testing.T, s *fakeServer, cfg Config) *Client {
	t.Helper()
	cfg.Server = s.addr
	cfg.Network = s.network
	if cfg.retry == nil {
		cfg.retry = fastRetry
	}
	if s.network == "tcp-tls" && cfg.TLS == nil {
		cfg.TLS = &tls.Config{InsecureSkipVerify: true}
	}
	c, err := Dial(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func nextEvent(t *testing.T, c *Client) Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("events closed: %v", c.Err())
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	panic("unreachable")
}

func noEvent(t *testing.T, c *Client) {
	t.Helper()
	select {
	case ev := <-c.Events():
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

// llqRequests returns the LLQ options of the requests with opcode op
// that s received, in order.
func llqRequests(s *fakeServer, op llqopt.Opcode) []llqopt.Option {
	var out []llqopt.Option
	for _, m := range s.gotRequests() {
		if opts, _ := llqopt.From(m); len(opts) > 0 && opts[0].Opcode == op {
			out = append(out, opts[0])
		}
	}
	return out
}

var networks = []string{"udp", "tcp", "tcp-tls"}

func TestSetupRefreshCancel(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			s := newFakeServer(t, network, nil)
			s.set(func(s *fakeServer) {
				s.records = []dns.RR{rr(t, host+" 60 IN AAAA fd00::1"), rr(t, host+" 60 IN A 192.0.2.1")}
			})
			c := dial(t, s, Config{})

			l, answers, err := c.Setup(t.Context(), host, dns.TypeAAAA)
			if err != nil {
				t.Fatal(err)
			}
			if len(answers) != 1 || answers[0].(*dns.AAAA).AAAA.String() != "fd00::1" {
				t.Fatalf("answers: %v", answers)
			}
			f, ok := s.llq(l.ID())
			if !ok || !f.established {
				t.Fatalf("server has no LLQ %#x", l.ID())
			}
			if l.Lease() != time.Hour || time.Until(l.Expires()) > time.Hour || time.Until(l.Expires()) < 59*time.Minute {
				t.Fatalf("lease %v, expires %v", l.Lease(), l.Expires())
			}
			if l.Name() != host || l.Qtype() != dns.TypeAAAA {
				t.Fatalf("question %s %d", l.Name(), l.Qtype())
			}
			setups := llqRequests(s, llqopt.Setup)
			want := []llqopt.Option{{Opcode: llqopt.Setup, Lease: 7200}}
			if network == "udp" {
				want = append(want, llqopt.Option{Opcode: llqopt.Setup, ID: l.ID(), Lease: 3600})
			}
			if !equalOptions(setups, want) {
				t.Fatalf("setup requests %+v, want %+v", setups, want)
			}

			if err := l.Refresh(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := l.Cancel(t.Context()); err != nil {
				t.Fatal(err)
			}
			refreshes := llqRequests(s, llqopt.Refresh)
			want = []llqopt.Option{{Opcode: llqopt.Refresh, ID: l.ID(), Lease: 3600}, {Opcode: llqopt.Refresh, ID: l.ID()}}
			if !equalOptions(refreshes, want) {
				t.Fatalf("refreshes %+v, want %+v", refreshes, want)
			}
			if _, ok := s.llq(l.ID()); ok {
				t.Fatal("the server still has the LLQ after Cancel")
			}
			if err := l.Refresh(t.Context()); !errors.Is(err, ErrCanceled) {
				t.Fatalf("Refresh after Cancel: %v", err)
			}
			if err := l.Cancel(t.Context()); err != nil {
				t.Fatalf("second Cancel: %v", err)
			}
			// Requests went out with distinct message IDs.
			ids := map[uint16]bool{}
			for _, m := range s.gotRequests() {
				ids[m.Id] = true
			}
			if len(ids) != len(s.gotRequests()) {
				t.Fatalf("%d message IDs for %d requests", len(ids), len(s.gotRequests()))
			}
		})
	}
}

func equalOptions(a, b []llqopt.Option) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEvents(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			s := newFakeServer(t, network, nil)
			old := rr(t, host+" 60 IN AAAA fd00::1")
			s.set(func(s *fakeServer) { s.records = []dns.RR{old} })
			c := dial(t, s, Config{})
			l, _, err := c.Setup(t.Context(), host, dns.TypeAAAA)
			if err != nil {
				t.Fatal(err)
			}

			// An add and a remove, sent three times as if the acks were lost.
			added := rr(t, host+" 60 IN AAAA fd00::2")
			id := s.push(l.ID(), []dns.RR{added}, []dns.RR{old}, 3)
			ev := nextEvent(t, c)
			if ev.ID != l.ID() || ev.Name != host || ev.Qtype != dns.TypeAAAA {
				t.Fatalf("event %+v", ev)
			}
			if len(ev.Added) != 1 || ev.Added[0].String() != added.String() {
				t.Fatalf("added %v", ev.Added)
			}
			if len(ev.Removed) != 1 || ev.Removed[0].Header().Ttl != 0 || ev.Removed[0].(*dns.AAAA).AAAA.String() != "fd00::1" {
				t.Fatalf("removed %v", ev.Removed)
			}
			waitFor(t, "three acks", func() bool { return len(s.gotAcks()) == 3 })
			for _, a := range s.gotAcks() {
				opts, _ := llqopt.From(a)
				if a.Id != id || !a.Response || a.Rcode != dns.RcodeSuccess || len(a.Answer) != 0 ||
					len(a.Question) != 1 || a.Question[0].Name != host || a.Question[0].Qtype != dns.TypeAAAA ||
					len(opts) != 1 || opts[0] != (llqopt.Option{Opcode: llqopt.Event, ID: l.ID()}) || a.IsTsig() != nil {
					t.Fatalf("ack %v", a)
				}
			}
			noEvent(t, c) // the copies are not delivered again

			// An event for an LLQ that is not ours: neither acked nor delivered.
			s.set(func(s *fakeServer) {
				f := s.llqs[l.ID()]
				s.pushLocked(f.peer, f.q, l.ID()+1, []dns.RR{added}, nil, 1)
			})
			// The next one still is: it also shows the one before was handled.
			s.push(l.ID(), nil, []dns.RR{added}, 1)
			if ev := nextEvent(t, c); len(ev.Removed) != 1 || len(ev.Added) != 0 {
				t.Fatalf("second event %+v", ev)
			}
			waitFor(t, "the fourth ack", func() bool { return len(s.gotAcks()) == 4 })
			time.Sleep(20 * time.Millisecond)
			if n := len(s.gotAcks()); n != 4 {
				t.Fatalf("%d acks, want 4", n)
			}
			noEvent(t, c)

			// After Cancel, events for the LLQ are ignored.
			if err := l.Cancel(t.Context()); err != nil {
				t.Fatal(err)
			}
			s.set(func(s *fakeServer) {
				s.pushLocked(streamOrUDPPeer(s, c), dns.Question{Name: host, Qtype: dns.TypeAAAA, Qclass: dns.ClassINET}, l.ID(), []dns.RR{added}, nil, 1)
			})
			noEvent(t, c)
			if n := len(s.gotAcks()); n != 4 {
				t.Fatalf("%d acks after cancel, want 4", n)
			}
		})
	}
}

// streamOrUDPPeer returns a peer that reaches c, for events about LLQs
// the server no longer has.
func streamOrUDPPeer(s *fakeServer, c *Client) fakePeer {
	if s.udp != nil {
		return udpPeer{s.udp, c.LocalAddr()}
	}
	for _, conn := range s.conns {
		if conn.RemoteAddr().String() == c.LocalAddr().String() {
			return streamPeer{conn, new(sync.Mutex)}
		}
	}
	s.t.Fatal("no connection from the client")
	return nil
}

func TestSlowConsumer(t *testing.T) {
	s := newFakeServer(t, "udp", nil)
	c := dial(t, s, Config{EventBuffer: 1})
	l, _, err := c.Setup(t.Context(), host, dns.TypeAAAA)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		s.push(l.ID(), []dns.RR{rr(t, host+" 60 IN AAAA fd00::"+string(rune('1'+i)))}, nil, 1)
	}
	waitFor(t, "three acks", func() bool { return len(s.gotAcks()) == 3 })
	if c.Dropped() != 2 {
		t.Fatalf("dropped %d, want 2", c.Dropped())
	}
	if ev := nextEvent(t, c); ev.Added[0].(*dns.AAAA).AAAA.String() != "fd00::1" {
		t.Fatalf("kept %v", ev)
	}
}

func TestServerErrors(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s := newFakeServer(t, network, nil)
			c := dial(t, s, Config{})

			s.set(func(s *fakeServer) { s.full = 30 })
			_, _, err := c.Setup(t.Context(), host, dns.TypeAAAA)
			var se *SetupError
			if !errors.As(err, &se) || se.LLQError != llqopt.ServFull || se.Lease != 30 || se.RetryAfter() != 30*time.Second || se.Op != llqopt.Setup {
				t.Fatalf("SERV-FULL: %v", err)
			}
			if !strings.Contains(err.Error(), "SERV-FULL") {
				t.Fatalf("message %q", err)
			}

			s.set(func(s *fakeServer) { s.full, s.refuse = 0, true })
			_, _, err = c.Setup(t.Context(), host, dns.TypeAAAA)
			if !errors.As(err, &se) || se.Rcode != dns.RcodeRefused || se.RetryAfter() != 0 {
				t.Fatalf("REFUSED: %v", err)
			}

			// A failed setup leaves nothing behind: this one works.
			s.set(func(s *fakeServer) { s.refuse = false })
			l, _, err := c.Setup(t.Context(), host, dns.TypeAAAA)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.Setup(t.Context(), strings.ToUpper(host), dns.TypeAAAA); !errors.Is(err, ErrExists) {
				t.Fatalf("second setup: %v", err)
			}

			// The server forgets the LLQ: NO-SUCH-LLQ, and it is gone.
			s.set(func(s *fakeServer) { delete(s.llqs, l.ID()) })
			err = l.Refresh(t.Context())
			if !errors.As(err, &se) || se.LLQError != llqopt.NoSuchLLQ || se.Op != llqopt.Refresh {
				t.Fatalf("refresh of a forgotten LLQ: %v", err)
			}
			if err := l.Refresh(t.Context()); !errors.Is(err, ErrCanceled) {
				t.Fatalf("refresh after NO-SUCH-LLQ: %v", err)
			}
			if _, _, err := c.Setup(t.Context(), host, dns.TypeAAAA); err != nil {
				t.Fatalf("setup again: %v", err)
			}
			if _, _, err := c.Setup(t.Context(), host, dns.TypeANY); err == nil {
				t.Fatal("setup for ANY")
			}
		})
	}
}

func TestRetransmission(t *testing.T) {
	s := newFakeServer(t, "udp", nil)
	s.set(func(s *fakeServer) { s.dropSetups = 2 })
	c := dial(t, s, Config{})
	l, _, err := c.Setup(t.Context(), host, dns.TypeAAAA)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint16
	for _, m := range s.gotRequests() {
		if opts, _ := llqopt.From(m); opts[0].ID == 0 {
			ids = append(ids, m.Id)
		}
	}
	if len(ids) != 3 || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("setup requests with message IDs %v, want the same three times", ids)
	}
	if l.ID() == 0 {
		t.Fatal("no ID")
	}
}

func TestTimeout(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s := newFakeServer(t, network, nil)
			s.set(func(s *fakeServer) { s.silent = true })
			c := dial(t, s, Config{})
			start := time.Now()
			_, _, err := c.Setup(t.Context(), host, dns.TypeAAAA)
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("setup: %v", err)
			}
			if d := time.Since(start); d < 700*time.Millisecond {
				t.Fatalf("gave up after %v", d)
			}
			want := 3
			if network != "udp" {
				want = 1 // no retransmission over TCP
			}
			if n := len(s.gotRequests()); n != want {
				t.Fatalf("%d requests, want %d", n, want)
			}

			// The caller's context bounds the wait.
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			if _, _, err := c.Setup(ctx, host, dns.TypeAAAA); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("setup with a short context: %v", err)
			}
		})
	}
}

func TestForgedChallenges(t *testing.T) {
	s := newFakeServer(t, "udp", nil)
	s.set(func(s *fakeServer) { s.spoof = true })
	c := dial(t, s, Config{})
	l, _, err := c.Setup(t.Context(), host, dns.TypeAAAA)
	if err != nil {
		t.Fatal(err)
	}
	if l.ID() == 0xbad || l.ID() == 0xbad2 {
		t.Fatalf("took a forged challenge: ID %#x", l.ID())
	}
	for _, o := range llqRequests(s, llqopt.Setup) {
		if o.ID == 0xbad || o.ID == 0xbad2 {
			t.Fatalf("answered a forged challenge: %+v", o)
		}
	}
}

// TestDuplicateChallenge is RFC 8764 Appendix A's pitfall: a late copy of
// the challenge looks like an empty ACK+Answers.
func TestDuplicateChallenge(t *testing.T) {
	s := newFakeServer(t, "udp", nil)
	s.set(func(s *fakeServer) { s.dupChall = true })
	s.set(func(s *fakeServer) { s.records = []dns.RR{rr(t, host+" 60 IN AAAA fd00::1")} })
	c := dial(t, s, Config{})
	_, answers, err := c.Setup(t.Context(), host, dns.TypeAAAA)
	if err != nil {
		t.Fatal(err)
	}
	if len(answers) != 1 {
		t.Fatalf("answers %v: the copy of the challenge passed for the ACK", answers)
	}
}

func TestPortHint(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s := newFakeServer(t, network, nil)
			c := dial(t, s, Config{UDPPortHint: 5353})
			l, _, err := c.Setup(t.Context(), host, dns.TypeAAAA)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Refresh(t.Context()); err != nil {
				t.Fatal(err)
			}
			want := llqopt.Error(5353)
			if network == "udp" {
				want = 0
			}
			for _, m := range s.gotRequests() {
				if opts, _ := llqopt.From(m); opts[0].Error != want {
					t.Fatalf("LLQ-ERROR %d in %v, want %d", opts[0].Error, opts[0], want)
				}
			}
			s.set(func(s *fakeServer) {
				if network == "tcp" && len(s.conns) != 1 {
					t.Errorf("%d connections", len(s.conns))
				}
			})
		})
	}
}

func TestTSIG(t *testing.T) {
	md5Key := &keyfile.Key{Name: "Alice.Members.Example.com", Algorithm: "HMAC-MD5.SIG-ALG.REG.INT", Secret: secret}
	for _, tc := range []struct {
		network string
		key     *keyfile.Key
	}{{"udp", testKey}, {"tcp", testKey}, {"tcp-tls", testKey}, {"udp", md5Key}} {
		t.Run(tc.network+"/"+tc.key.Algorithm, func(t *testing.T) {
			k, _ := normalizeKey(*tc.key)
			s := newFakeServer(t, tc.network, &k)
			s.set(func(s *fakeServer) { s.records = []dns.RR{rr(t, host+" 60 IN AAAA fd00::1")} })
			c := dial(t, s, Config{Key: tc.key})
			l, answers, err := c.Setup(t.Context(), host, dns.TypeAAAA)
			if err != nil || len(answers) != 1 {
				t.Fatalf("setup: %v %v", answers, err)
			}
			s.push(l.ID(), []dns.RR{rr(t, host+" 60 IN AAAA fd00::2")}, nil, 2)
			nextEvent(t, c)
			waitFor(t, "two acks", func() bool { return len(s.gotAcks()) == 2 })
			for _, a := range s.gotAcks() {
				if a.IsTsig() == nil {
					t.Fatalf("unsigned ack %v", a)
				}
			}
			if err := l.Refresh(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := l.Cancel(t.Context()); err != nil {
				t.Fatal(err)
			}
			if n := s.badTSIGs(); n != 0 {
				t.Fatalf("the server failed %d TSIGs", n)
			}
			for _, m := range s.gotRequests() {
				if m.IsTsig() == nil {
					t.Fatalf("unsigned request %v", m)
				}
			}
		})
	}
}

func TestTSIGRejects(t *testing.T) {
	const other = "b3RoZXIgc2VjcmV0IG9mIHRoaXJ0eS10d28gb2N0ZXRzIQ=="
	t.Run("reply signed with another key", func(t *testing.T) {
		s := newFakeServer(t, "udp", testKey)
		s.set(func(s *fakeServer) { s.signSecret = other })
		c := dial(t, s, Config{Key: testKey})
		if _, _, err := c.Setup(t.Context(), host, dns.TypeAAAA); !errors.Is(err, ErrTimeout) {
			t.Fatalf("setup: %v", err)
		}
		if n := len(s.gotRequests()); n != 3 {
			t.Fatalf("%d requests, want 3: the bad replies count as none", n)
		}
	})
	t.Run("unsigned reply", func(t *testing.T) {
		s := newFakeServer(t, "tcp", nil)
		c := dial(t, s, Config{Key: testKey})
		if _, _, err := c.Setup(t.Context(), host, dns.TypeAAAA); !errors.Is(err, ErrTimeout) {
			t.Fatalf("setup: %v", err)
		}
	})
	t.Run("NOTAUTH", func(t *testing.T) {
		s := newFakeServer(t, "udp", &keyfile.Key{Name: testKey.Name, Algorithm: testKey.Algorithm, Secret: other})
		c := dial(t, s, Config{Key: testKey})
		_, _, err := c.Setup(t.Context(), host, dns.TypeAAAA)
		var se *SetupError
		if !errors.As(err, &se) || se.Rcode != dns.RcodeNotAuth || se.TSIGError != dns.RcodeBadSig {
			t.Fatalf("setup: %v", err)
		}
		if !strings.Contains(err.Error(), "BADSIG") {
			t.Fatalf("message %q", err)
		}
	})
	t.Run("BADTIME", func(t *testing.T) {
		s := newFakeServer(t, "tcp", testKey)
		s.set(func(s *fakeServer) { s.notAuth = dns.RcodeBadTime })
		c := dial(t, s, Config{Key: testKey})
		_, _, err := c.Setup(t.Context(), host, dns.TypeAAAA)
		var se *SetupError
		if !errors.As(err, &se) || se.Rcode != dns.RcodeNotAuth || se.TSIGError != dns.RcodeBadTime {
			t.Fatalf("setup: %v", err)
		}
		// A BADTIME answer is signed: one with a wrong MAC counts as none.
		s.set(func(s *fakeServer) { s.signSecret = other })
		if _, _, err := c.Setup(t.Context(), host, dns.TypeAAAA); !errors.Is(err, ErrTimeout) {
			t.Fatalf("setup with a forged BADTIME: %v", err)
		}
	})
	t.Run("events", func(t *testing.T) {
		s := newFakeServer(t, "udp", testKey)
		c := dial(t, s, Config{Key: testKey, UnsignedAcks: true})
		l, _, err := c.Setup(t.Context(), host, dns.TypeAAAA)
		if err != nil {
			t.Fatal(err)
		}
		added := []dns.RR{rr(t, host+" 60 IN AAAA fd00::2")}
		s.set(func(s *fakeServer) { s.signSecret = other })
		s.push(l.ID(), added, nil, 1)
		s.set(func(s *fakeServer) { s.key = nil }) // and unsigned
		s.push(l.ID(), added, nil, 1)
		noEvent(t, c)
		s.set(func(s *fakeServer) { s.key, s.signSecret = testKey, testKey.Secret })
		s.push(l.ID(), added, nil, 1)
		nextEvent(t, c)
		// The acks were unsigned (UnsignedAcks), so the server's check
		// failed on the one ack it got.
		waitFor(t, "the ack", func() bool { return s.badTSIGs() == 1 })
		if n := len(s.gotAcks()); n != 0 {
			t.Fatalf("%d acks passed the server's TSIG check", n)
		}
	})
}

func TestConnectionLost(t *testing.T) {
	s := newFakeServer(t, "tcp", nil)
	c := dial(t, s, Config{})
	if _, _, err := c.Setup(t.Context(), host, dns.TypeAAAA); err != nil {
		t.Fatal(err)
	}
	s.dropConns()
	select {
	case _, ok := <-c.Events():
		if ok {
			t.Fatal("an event")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("events not closed")
	}
	if !errors.Is(c.Err(), io.EOF) {
		t.Fatalf("Err: %v", c.Err())
	}
	if _, _, err := c.Setup(t.Context(), "desktop.alice.members.example.com.", dns.TypeAAAA); !errors.Is(err, io.EOF) {
		t.Fatalf("setup on a lost connection: %v", err)
	}
}

func TestClose(t *testing.T) {
	s := newFakeServer(t, "udp", nil)
	c := dial(t, s, Config{})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-c.Events(); ok {
		t.Fatal("events open after Close")
	}
	if c.Err() != ErrClosed {
		t.Fatalf("Err: %v", c.Err())
	}
	if _, _, err := c.Setup(t.Context(), host, dns.TypeAAAA); err != ErrClosed {
		t.Fatalf("setup after Close: %v", err)
	}
	c.Close()
}

func TestDialErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Server: "127.0.0.1:1", Network: "sctp"},
		{Server: "127.0.0.1:1", Lease: time.Millisecond},
		{Server: "127.0.0.1:1", Key: &keyfile.Key{Name: "k.", Algorithm: "hmac-foo.", Secret: secret}},
		{Server: "127.0.0.1:1", Key: &keyfile.Key{Name: "k.", Algorithm: dns.HmacSHA256, Secret: "!!"}},
	} {
		if c, err := Dial(t.Context(), cfg); err == nil {
			c.Close()
			t.Errorf("Dial(%+v) worked", cfg)
		}
	}
}

func TestCheck(t *testing.T) {
	reply := func(rcode int, opts ...llqopt.Option) *dns.Msg {
		m := new(dns.Msg).SetQuestion(host, dns.TypeAAAA)
		m.Response, m.Rcode = true, rcode
		if opts != nil {
			llqopt.Set(m, 1232, opts...)
		}
		return m
	}
	badVers := reply(dns.RcodeSuccess)
	badVers.SetEdns0(1232, false)
	badVers.IsEdns0().Option = append(badVers.IsEdns0().Option, &dns.EDNS0_LLQ{Code: llqopt.Code, Version: 2, Opcode: 1, Id: 7})
	for _, tc := range []struct {
		name string
		r    *dns.Msg
		op   llqopt.Opcode
		id   uint64
		err  error // a sentinel, or a *SetupError to compare
	}{
		{"challenge", reply(0, llqopt.Option{Opcode: llqopt.Setup, ID: 7, Lease: 900}), llqopt.Setup, 0, nil},
		{"ack", reply(0, llqopt.Option{Opcode: llqopt.Setup, ID: 7, Lease: 900}), llqopt.Setup, 7, nil},
		{"no option", reply(0), llqopt.Setup, 0, ErrNotLLQ},
		{"no ID", reply(0, llqopt.Option{Opcode: llqopt.Setup, Lease: 900}), llqopt.Setup, 0, ErrProtocol},
		{"other ID", reply(0, llqopt.Option{Opcode: llqopt.Refresh, ID: 8}), llqopt.Refresh, 7, ErrProtocol},
		{"other opcode", reply(0, llqopt.Option{Opcode: llqopt.Refresh, ID: 7}), llqopt.Setup, 7, ErrProtocol},
		{"static", reply(0, llqopt.Option{Opcode: llqopt.Setup, Error: llqopt.Static}), llqopt.Setup, 0, &SetupError{Op: llqopt.Setup, LLQError: llqopt.Static}},
		{"format", reply(0, llqopt.Option{Opcode: llqopt.Setup, Error: llqopt.FormatErr}), llqopt.Setup, 0, &SetupError{Op: llqopt.Setup, LLQError: llqopt.FormatErr}},
		{"version", badVers, llqopt.Setup, 0, &SetupError{Op: llqopt.Setup, LLQError: llqopt.BadVers}},
		{"FORMERR", reply(dns.RcodeFormatError), llqopt.Refresh, 7, &SetupError{Op: llqopt.Refresh, Rcode: dns.RcodeFormatError}},
		{"SERVFAIL", reply(dns.RcodeServerFailure, llqopt.Option{Opcode: llqopt.Setup}), llqopt.Setup, 0, &SetupError{Op: llqopt.Setup, Rcode: dns.RcodeServerFailure}},
	} {
		_, err := check(tc.r, tc.op, tc.id)
		var want, got *SetupError
		switch {
		case errors.As(tc.err, &want):
			if !errors.As(err, &got) || *got != *want {
				t.Errorf("%s: %v, want %v", tc.name, err, want)
			}
		case !errors.Is(err, tc.err):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
}
