package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/dnspush"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/test/coredns"
)

// pushServer starts bin/coredns with dns-push over TLS on {{TLSPORT}},
// advertised by srv-discovery, beside llq, with 2-4 s update leases.
func pushServer(t *testing.T) (*coredns.Server, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	cert, key, pool := writeCert(t, dir)
	writeKeys(t, dir, alice, bob)
	s := coredns.New(t, dir, fmt.Sprintf(`members.example.com:{{PORT}} {
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
	srv-discovery {
		update ns1.members.example.com. {{UPDATEPORT}}
		push   ns1.members.example.com. {{TLSPORT}}
	}
	llq {
		tcp 127.0.0.1:{{LLQPORT}}
	}
	dns-push {
		tls 127.0.0.1:{{TLSPORT}} %s %s
	}
}
`, cert, key))
	s.Start(zone)
	return s, pool
}

func dialPush(t *testing.T, s *coredns.Server, pool *x509.CertPool, k testKey) *dnspush.Session {
	t.Helper()
	cfg := dnspush.Config{Server: s.TLSAddr(), TLS: &tls.Config{RootCAs: pool, ServerName: "ns1.members.example.com"}}
	if k.name != "" {
		cfg.Key = &keyfile.Key{Name: k.name, Algorithm: k.miekgAlg(), Secret: k.secret}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := dnspush.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

func nextPush(t *testing.T, s *dnspush.Session, within time.Duration) dnspush.Push {
	t.Helper()
	select {
	case p, ok := <-s.Pushes():
		if !ok {
			t.Fatalf("the session ended: %v", s.Err())
		}
		return p
	case <-time.After(within):
		t.Fatalf("no PUSH within %v", within)
	}
	return dnspush.Push{}
}

// TestDNSPush: against bin/coredns over TLS, found by its SRV record, a
// session that proved alice's key gets a PUSH for a record nsupdate adds,
// for one it deletes, and for a lease's end; bob's session may not
// subscribe to alice's names (REFUSED, with a retry delay).
func TestDNSPush(t *testing.T) {
	s, pool := pushServer(t)
	if got := answers(query(t, s.Addr(), "_dns-push-tls._tcp.alice.members.example.com.", dns.TypeSRV)); len(got) != 1 || !strings.Contains(got[0], fmt.Sprint(s.TLSPort)) {
		t.Fatalf("the push SRV record: %v", got)
	}
	host := "h.alice.members.example.com."
	sess := dialPush(t, s, pool, alice)
	ctx := context.Background()
	if _, err := sess.Subscribe(ctx, host, dns.TypeAAAA); err != nil {
		t.Fatal(err)
	}
	if out, err := nsupdate(t, s, alice, "update add "+host+" 300 AAAA fd00::1\nupdate add "+host+" 300 AAAA fd00::2"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if p := nextPush(t, sess, 5*time.Second); len(p.Added) != 2 || len(p.Removed) != 0 {
		t.Fatalf("PUSH after the UPDATE: %+v", p)
	}
	if out, err := nsupdate(t, s, alice, "update delete "+host+" AAAA fd00::1"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if p := nextPush(t, sess, 5*time.Second); len(p.Removed) != 1 || !strings.Contains(p.Removed[0].String(), "fd00::1") {
		t.Fatalf("PUSH after the deletion: %+v", p)
	}
	// The record's 2 s lease (the least ddul-lease grants here) ends.
	leased := "l.alice.members.example.com."
	if _, err := sess.Subscribe(ctx, leased, dns.TypeANY); err != nil {
		t.Fatal(err)
	}
	leasedUpdate(t, s.UpdateAddr(), 2, leased+" 60 IN TXT \"leased\"")
	if p := nextPush(t, sess, 5*time.Second); len(p.Added) != 1 {
		t.Fatalf("PUSH of the leased record: %+v", p)
	}
	if p := nextPush(t, sess, 10*time.Second); len(p.Removed) != 1 {
		t.Fatalf("PUSH at the lease's end: %+v", p)
	}

	other := dialPush(t, s, pool, bob)
	_, err := other.Subscribe(ctx, host, dns.TypeAAAA)
	var refused *dnspush.RefusedError
	if !errors.As(err, &refused) || refused.Rcode != dns.RcodeRefused || refused.RetryDelay == 0 {
		t.Errorf("bob subscribing to alice's name: %v, want REFUSED with a retry delay", err)
	}
	anonymous := dialPush(t, s, pool, testKey{})
	if _, err := anonymous.Subscribe(ctx, host, dns.TypeAAAA); !errors.As(err, &refused) || refused.Rcode != dns.RcodeRefused {
		t.Errorf("a session that proved no key: %v, want REFUSED", err)
	}
}
