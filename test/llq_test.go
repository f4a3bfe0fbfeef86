package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/llq"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
	"github.com/openbtmm/btmm/test/coredns"
)

// llqServer starts bin/coredns with llq on UDP, TCP and TLS, short update
// leases and a limit of 4 LLQs per key.
func llqServer(t *testing.T, extra string) (*coredns.Server, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	cert, key, pool := writeCert(t, dir)
	writeKeys(t, dir, alice, bob)
	cf := fmt.Sprintf(`members.example.com:{{PORT}} {
	btmm members.example.com {
		keys users.keys
		store members.db
		ns ns1.members.example.com. 127.0.0.1
	}
	ddul-lease {
		min 2s
		max 4s
	}
	tsig-update {
		udp 127.0.0.1:{{UPDATEPORT}}
		tcp 127.0.0.1:{{UPDATEPORT}}
	}
	llq {
		limit 4
		udp 127.0.0.1:{{LLQPORT}}
		tcp 127.0.0.1:{{LLQPORT}}
		tls 127.0.0.1:{{LLQTLSPORT}} %s %s
		%s
	}
	reload 2s
}
`, cert, key, extra)
	s := coredns.New(t, dir, cf)
	s.Start(zone)
	return s, pool
}

func dialLLQ(t *testing.T, s *coredns.Server, network string, pool *x509.CertPool, k testKey) *llq.Client {
	t.Helper()
	cfg := llq.Config{Server: s.LLQAddr(), Network: network, Lease: 15 * time.Minute}
	if network == "tcp-tls" {
		cfg.Server = s.LLQTLSAddr()
		cfg.TLS = &tls.Config{RootCAs: pool, ServerName: "ns1.members.example.com"}
	}
	if k.name != "" {
		cfg.Key = &keyfile.Key{Name: k.name, Algorithm: k.miekgAlg(), Secret: k.secret}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := llq.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func nextEvent(t *testing.T, c *llq.Client, within time.Duration) llq.Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("the client stopped: %v", c.Err())
		}
		return ev
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
		return llq.Event{}
	}
}

func noEvent(t *testing.T, c *llq.Client, during time.Duration) {
	t.Helper()
	select {
	case ev := <-c.Events():
		t.Fatalf("an unexpected event: %+v", ev)
	case <-time.After(during):
	}
}

func rrStrings(rrs []dns.RR) string {
	var s []string
	for _, rr := range rrs {
		s = append(s, rr.String())
	}
	return strings.Join(s, "; ")
}

// TestLLQEveryTransport: over UDP, TCP and TLS, a signed LLQ gets the
// current answers, then an event for every addition, removal and lease
// end; it refreshes and cancels.
func TestLLQEveryTransport(t *testing.T) {
	s, pool := llqServer(t, "")
	for i, network := range []string{"udp", "tcp", "tcp-tls"} {
		t.Run(network, func(t *testing.T) {
			host := fmt.Sprintf("h%d.alice.members.example.com.", i)
			if out, err := nsupdate(t, s, alice, "update add "+host+" 60 AAAA fd00::1"); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			c := dialLLQ(t, s, network, pool, alice)
			ctx := context.Background()
			q, answers, err := c.Setup(ctx, host, dns.TypeAAAA)
			if err != nil {
				t.Fatal(err)
			}
			if len(answers) != 1 || !strings.Contains(answers[0].String(), "fd00::1") {
				t.Fatalf("setup answers: %s", rrStrings(answers))
			}
			// Granted 15 minutes; over UDP the ACK tells what is left of it.
			if q.Lease() < 14*time.Minute+50*time.Second || q.Lease() > 15*time.Minute {
				t.Fatalf("granted lease %v, want 15m", q.Lease())
			}

			nsupdate(t, s, alice, "update add "+host+" 60 AAAA fd00::2")
			ev := nextEvent(t, c, 3*time.Second)
			if ev.ID != q.ID() || len(ev.Added) != 1 || !strings.Contains(ev.Added[0].String(), "fd00::2") || len(ev.Removed) != 0 {
				t.Fatalf("add event: %+v", ev)
			}
			nsupdate(t, s, alice, "update delete "+host+" AAAA fd00::1")
			ev = nextEvent(t, c, 3*time.Second)
			if len(ev.Removed) != 1 || !strings.Contains(ev.Removed[0].String(), "fd00::1") || len(ev.Added) != 0 {
				t.Fatalf("remove event: %+v", ev)
			}
			// A lease's end is a removal too (ddul-lease's minimum here is 2 s).
			leasedUpdate(t, s.UpdateAddr(), 2, host+" 60 IN AAAA fd00::3")
			if ev = nextEvent(t, c, 3*time.Second); len(ev.Added) != 1 {
				t.Fatalf("leased add: %+v", ev)
			}
			if ev = nextEvent(t, c, 5*time.Second); len(ev.Removed) != 1 || !strings.Contains(ev.Removed[0].String(), "fd00::3") {
				t.Fatalf("expiry event: %+v", ev)
			}

			if err := q.Refresh(ctx); err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if err := q.Cancel(ctx); err != nil {
				t.Fatalf("cancel: %v", err)
			}
			nsupdate(t, s, alice, "update add "+host+" 60 AAAA fd00::4")
			noEvent(t, c, 500*time.Millisecond)
		})
	}
}

// TestLLQRefusals: unsigned LLQs (tsig required), another user's names,
// a bad key, and more than the limit are refused.
func TestLLQRefusals(t *testing.T) {
	s, pool := llqServer(t, "")
	ctx := context.Background()
	var se *llq.SetupError

	_, _, err := dialLLQ(t, s, "udp", pool, testKey{}).Setup(ctx, "h.alice.members.example.com.", dns.TypeA)
	if !errors.As(err, &se) || se.Rcode != dns.RcodeRefused {
		t.Fatalf("unsigned LLQ: %v, want REFUSED", err)
	}
	_, _, err = dialLLQ(t, s, "tcp", pool, alice).Setup(ctx, "h.bob.members.example.com.", dns.TypeA)
	if !errors.As(err, &se) || se.Rcode != dns.RcodeRefused {
		t.Fatalf("alice watching bob: %v, want REFUSED", err)
	}
	wrong := alice
	wrong.secret = bob.secret
	_, _, err = dialLLQ(t, s, "udp", pool, wrong).Setup(ctx, "h.alice.members.example.com.", dns.TypeA)
	if !errors.As(err, &se) || se.Rcode != dns.RcodeNotAuth || se.TSIGError != dns.RcodeBadSig {
		t.Fatalf("a wrong secret: %v, want NOTAUTH/BADSIG", err)
	}
	c := dialLLQ(t, s, "udp", pool, alice)
	for i := range 4 {
		if _, _, err := c.Setup(ctx, fmt.Sprintf("n%d.alice.members.example.com.", i), dns.TypeA); err != nil {
			t.Fatalf("LLQ %d of a limit of 4: %v", i+1, err)
		}
	}
	_, _, err = c.Setup(ctx, "n4.alice.members.example.com.", dns.TypeA)
	if !errors.As(err, &se) || se.LLQError != llqopt.ServFull {
		t.Fatalf("a fifth LLQ: %v, want SERV-FULL", err)
	}
	// Bob's allowance is his own.
	if _, _, err := dialLLQ(t, s, "tcp", pool, bob).Setup(ctx, "x.bob.members.example.com.", dns.TypeA); err != nil {
		t.Fatalf("bob's first LLQ: %v", err)
	}
}

// TestLLQUnacknowledgedEventsEndIt: a client that never acknowledges gets
// the event three times (after 2 and 4 s) and then its LLQ is gone.
func TestLLQUnacknowledgedEventsEndIt(t *testing.T) {
	s, _ := llqServer(t, "tsig optional")
	host := "quiet.alice.members.example.com."
	conn, err := net.Dial("udp", s.LLQAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exchange := func(o llqopt.Option) llqopt.Option { return rawLLQ(t, conn, host, o) }
	ch := exchange(llqopt.Option{Opcode: llqopt.Setup, Lease: 900})
	if ack := exchange(llqopt.Option{Opcode: llqopt.Setup, ID: ch.ID, Lease: ch.Lease}); ack.Error != llqopt.NoError {
		t.Fatalf("setup: %+v", ack)
	}
	nsupdate(t, s, alice, "update add "+host+" 60 A 192.0.2.1")
	// The record's lease (4 s here) ends meanwhile, which is a second
	// event: count the transmissions of the first.
	var at []time.Time
	var first uint16
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(12 * time.Second))
	for {
		n, err := conn.Read(buf)
		if err != nil {
			break
		}
		ev := new(dns.Msg)
		if ev.Unpack(buf[:n]) != nil {
			continue
		}
		if len(at) == 0 {
			first = ev.Id
		}
		if ev.Id == first {
			at = append(at, time.Now())
		}
	}
	if len(at) != 3 {
		t.Fatalf("%d transmissions of an unacknowledged event, want 3", len(at))
	}
	if d1, d2 := at[1].Sub(at[0]), at[2].Sub(at[1]); d1 < 1500*time.Millisecond || d2 < 3500*time.Millisecond {
		t.Fatalf("resent after %v and %v, want about 2 s and 4 s", d1, d2)
	}
	time.Sleep(time.Until(at[2].Add(8500 * time.Millisecond)))
	if o := exchange(llqopt.Option{Opcode: llqopt.Refresh, ID: ch.ID, Lease: 900}); o.Error != llqopt.NoSuchLLQ {
		t.Fatalf("refresh of the LLQ after three unanswered events: %+v, want NO-SUCH-LLQ", o)
	}
}

// TestLLQSurvivesReload: a Corefile reload keeps the LLQs and their
// connections, and applies the new key file.
func TestLLQSurvivesReload(t *testing.T) {
	s, pool := llqServer(t, "")
	c := dialLLQ(t, s, "tcp", pool, alice)
	host := "r.alice.members.example.com."
	q, _, err := c.Setup(context.Background(), host, dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	writeKeys(t, s.Dir, alice, bob, dave)
	s.Signal(syscall.SIGUSR1)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.Output(), "Reloading complete") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload:\n%s", s.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	nsupdate(t, s, alice, "update add "+host+" 60 A 192.0.2.1")
	if ev := nextEvent(t, c, 3*time.Second); ev.ID != q.ID() || len(ev.Added) != 1 {
		t.Fatalf("event after the reload: %+v", ev)
	}
	// The new key works for LLQs at once.
	if _, _, err := dialLLQ(t, s, "udp", pool, dave).Setup(context.Background(), "pc.dave.members.example.com.", dns.TypeA); err != nil {
		t.Fatalf("a key added by the reload: %v", err)
	}
}

// TestLLQChallengeFromElsewhere: a challenge response from another address
// or port does not establish the LLQ, even with the right ID.
func TestLLQChallengeFromElsewhere(t *testing.T) {
	s, _ := llqServer(t, "tsig optional")
	host := "spoof.alice.members.example.com."
	dial := func(local string) net.Conn {
		raddr, _ := net.ResolveUDPAddr("udp", s.LLQAddr())
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(local)}, raddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	exchange := func(c net.Conn, o llqopt.Option) llqopt.Option { return rawLLQ(t, c, host, o) }
	victim := dial("127.0.0.1")
	ch := exchange(victim, llqopt.Option{Opcode: llqopt.Setup, Lease: 900})
	for _, from := range []string{"127.0.0.1", "127.0.0.2"} { // another port, another address
		if o := exchange(dial(from), llqopt.Option{Opcode: llqopt.Setup, ID: ch.ID, Lease: ch.Lease}); o.Error != llqopt.NoSuchLLQ {
			t.Fatalf("a challenge response from %s: %+v, want NO-SUCH-LLQ", from, o)
		}
	}
	// No event goes to the victim, who never answered the challenge.
	nsupdate(t, s, alice, "update add "+host+" 60 A 192.0.2.1")
	victim.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := victim.Read(make([]byte, 4096)); err == nil {
		t.Fatalf("an event (%d octets) went to an address that never answered its challenge", n)
	}
}

// rawLLQ sends one unsigned LLQ request for host's A records with option o
// over the UDP conn and returns the reply's option.
func rawLLQ(t *testing.T, conn net.Conn, host string, o llqopt.Option) llqopt.Option {
	t.Helper()
	m := new(dns.Msg).SetQuestion(host, dns.TypeA)
	llqopt.Set(m, 1232, o)
	b, _ := m.Pack()
	conn.Write(b)
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	r.Unpack(buf[:n])
	opts, _ := llqopt.From(r)
	if len(opts) != 1 {
		t.Fatalf("reply without an LLQ option: %v", r)
	}
	return opts[0]
}
