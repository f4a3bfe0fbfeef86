package test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/test/coredns"
)

// adminServer starts bin/coredns with bob in the key file and an admin
// socket, and returns it with a function that runs bin/btmm-admin on it.
func adminServer(t *testing.T) (*coredns.Server, func(args ...string) string) {
	t.Helper()
	dir := t.TempDir()
	writeKeys(t, dir, bob)
	s := coredns.New(t, dir, `members.example.com:{{PORT}} {
	btmm members.example.com {
		keys users.keys
		admin admin.sock
		store members.db
		ns ns1.members.example.com. 127.0.0.1
	}
	tsig-update {
		udp 127.0.0.1:{{UPDATEPORT}}
		tcp 127.0.0.1:{{UPDATEPORT}}
	}
	llq {
		tcp 127.0.0.1:{{LLQPORT}}
	}
}
`)
	s.Start(zone)
	bin := coredns.Built(t, "btmm-admin")
	socket := filepath.Join(dir, "admin.sock")
	return s, func(args ...string) string {
		t.Helper()
		out, err := run(t, "", bin, append([]string{"-socket", socket}, args...)...)
		if err != nil {
			t.Fatalf("btmm-admin %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
}

// keyOf reads the key that btmm-admin printed, in BIND's key-file form.
func keyOf(t *testing.T, out string) testKey {
	t.Helper()
	keys, err := keyfile.Parse(strings.NewReader(out), "btmm-admin output")
	if err != nil || len(keys) != 1 {
		t.Fatalf("btmm-admin printed no key (%v):\n%s", err, out)
	}
	return testKey{keys[0].Name, keyfile.BINDAlgorithm(keys[0].Algorithm), keys[0].Secret}
}

// tsigError sends a signed UPDATE with k and returns the reply's TSIG
// error, or -1 for a reply that succeeded.
func tsigError(t *testing.T, s *coredns.Server, k testKey, owner string) int {
	t.Helper()
	m := new(dns.Msg).SetUpdate(zone)
	rr, _ := dns.NewRR(owner + " 60 IN A 192.0.2.1")
	m.Insert([]dns.RR{rr})
	// An error reply's TSIG does not verify (BADKEY and BADSIG go
	// unsigned): only a success must.
	r, _, _, err := signed(t, "udp", s.UpdateAddr(), k, m, time.Now())
	if r.Rcode == dns.RcodeSuccess {
		if err != nil {
			t.Fatalf("the reply to %s: %v", k.name, err)
		}
		return -1
	}
	if sig := r.IsTsig(); r.Rcode == dns.RcodeNotAuth && sig != nil {
		return int(sig.Error)
	}
	t.Fatalf("UPDATE with %s: %s", k.name, dns.RcodeToString[r.Rcode])
	return 0
}

// TestAdminUsersLive: with bin/btmm-admin on a running bin/coredns, a new
// user's first UPDATE (from nsupdate) succeeds with no reload; list shows
// exactly the users; during a rotation's overlap both keys work and the
// LLQ set up with the old key still hears events, and after it only the
// new key works and that LLQ is ended; a revoked user's next UPDATE gets
// BADKEY, its LLQ is ended (its connection closed), its records go.
func TestAdminUsersLive(t *testing.T) {
	s, admin := adminServer(t)
	ctx := context.Background()
	host := "h.alice.members.example.com."

	k1 := keyOf(t, admin("add", "alice"))
	if k1.name != "alice.members.example.com." {
		t.Fatalf("added %q", k1.name)
	}
	if out, err := nsupdate(t, s, k1, "update add "+host+" 60 AAAA fd00::1"); err != nil {
		t.Fatalf("the new user's first UPDATE: %v\n%s", err, out)
	}
	if got := answers(query(t, s.Addr(), host, dns.TypeAAAA)); len(got) != 1 {
		t.Fatalf("after the first UPDATE %s has %v", host, got)
	}
	// The user's domain is a zone of its own to stock clients at once.
	if got := answers(query(t, s.Addr(), "alice.members.example.com.", dns.TypeSOA)); len(got) != 1 {
		t.Errorf("the new user's SOA: %v", got)
	}

	var names []string
	for _, line := range strings.Split(strings.TrimSpace(admin("list")), "\n")[1:] {
		f := strings.Fields(line)
		names = append(names, f[0]+" "+f[2])
	}
	slices.Sort(names)
	if want := []string{"alice.members.example.com. store", "bob.members.example.com. keyfile"}; !slices.Equal(names, want) {
		t.Errorf("list: %v, want %v", names, want)
	}

	c1 := dialLLQ(t, s, "tcp", nil, k1)
	if _, _, err := c1.Setup(ctx, host, dns.TypeAAAA); err != nil {
		t.Fatal(err)
	}

	// Rotation with an overlap: both keys work.
	k2 := keyOf(t, admin("rotate", "alice", "-overlap", "1h"))
	if k2.secret == k1.secret {
		t.Fatal("rotate kept the secret")
	}
	for i, k := range []testKey{k1, k2} {
		if e := tsigError(t, s, k, fmt.Sprintf("k%d.alice.members.example.com.", i+1)); e != -1 {
			t.Errorf("key %d during the overlap: TSIG %s", i+1, dns.RcodeToString[e])
		}
	}
	nsupdate(t, s, k2, "update add "+host+" 60 AAAA fd00::2")
	if ev := nextEvent(t, c1, 5*time.Second); len(ev.Added) != 1 {
		t.Errorf("the LLQ of the previous key during the overlap: %+v", ev)
	}

	// A rotation with no overlap: only the newest key, and the LLQ of the
	// first key is ended.
	k3 := keyOf(t, admin("rotate", "alice", "-overlap", "0"))
	if e := tsigError(t, s, k2, "k2.alice.members.example.com."); e != dns.RcodeBadSig {
		t.Errorf("a replaced key after its overlap: TSIG %s, want BADSIG", dns.RcodeToString[e])
	}
	if e := tsigError(t, s, k3, "k3.alice.members.example.com."); e != -1 {
		t.Errorf("the newest key: TSIG %s", dns.RcodeToString[e])
	}
	select {
	case <-c1.Done():
	case <-time.After(5 * time.Second):
		t.Error("the LLQ of a replaced key was not ended")
	}

	// Revocation.
	c3 := dialLLQ(t, s, "tcp", nil, k3)
	if _, _, err := c3.Setup(ctx, host, dns.TypeAAAA); err != nil {
		t.Fatal(err)
	}
	if out := admin("revoke", "alice"); !strings.Contains(out, "revoked alice.members.example.com.") {
		t.Errorf("revoke said %q", out)
	}
	if e := tsigError(t, s, k3, "k3.alice.members.example.com."); e != dns.RcodeBadKey {
		t.Errorf("a revoked key: TSIG %s, want BADKEY", dns.RcodeToString[e])
	}
	select {
	case <-c3.Done():
	case <-time.After(5 * time.Second):
		t.Error("the revoked user's LLQ was not ended")
	}
	if r := query(t, s.Addr(), host, dns.TypeAAAA); r.Rcode != dns.RcodeNameError {
		t.Errorf("the revoked user's records: %s %v", dns.RcodeToString[r.Rcode], answers(r))
	}
	// bob, of the key file, was never touched.
	if out, err := nsupdate(t, s, bob, "update add h.bob.members.example.com. 60 A 192.0.2.2"); err != nil {
		t.Errorf("bob: %v\n%s", err, out)
	}
}
