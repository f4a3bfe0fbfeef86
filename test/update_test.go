package test

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

// TestNsupdateEveryAlgorithm: nsupdate, signed with each algorithm the
// server accepts, changes the user's own names; dig and kdig read them.
func TestNsupdateEveryAlgorithm(t *testing.T) {
	s := startServer(t, corefile("", ""), alice, bob, carol, dave)
	for _, k := range []testKey{alice, bob, carol, dave} {
		t.Run(k.alg, func(t *testing.T) {
			host := "laptop." + k.name
			out, err := nsupdate(t, s, k, "update add "+host+" 60 AAAA fd00::1")
			if err != nil {
				t.Fatalf("nsupdate with %s: %v\n%s", k.alg, err, out)
			}
			dig := needTool(t, "dig", "bind9-dnsutils")
			out, err = run(t, "", dig, "@127.0.0.1", "-p", itoa(s.Port), "-y", k.ySpec(), host, "AAAA", "+norec")
			if err != nil || !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "flags: qr aa") ||
				!strings.Contains(out, "fd00::1") || !strings.Contains(out, "TSIG") || strings.Contains(out, "failure") {
				t.Fatalf("signed dig does not show the record with a good TSIG: %v\n%s", err, out)
			}
			kdig := needTool(t, "kdig", "knot-dnsutils")
			out, err = run(t, "", kdig, "@127.0.0.1", "-p", itoa(s.Port), host, "AAAA", "+short")
			if err != nil || strings.TrimSpace(out) != "fd00::1" {
				t.Fatalf("kdig: %v\n%s", err, out)
			}
		})
	}
}

// TestNsupdateKeyFileFromTsigKeygen: tsig-keygen's output is the server's
// key file and nsupdate -k's key file as is.
func TestNsupdateKeyFileFromTsigKeygen(t *testing.T) {
	keygen := needTool(t, "tsig-keygen", "bind9")
	out, err := run(t, "", keygen, "-a", "hmac-sha256", "erin.members.example.com.")
	if err != nil {
		t.Fatalf("tsig-keygen: %v\n%s", err, out)
	}
	dir := t.TempDir()
	s := newServerWithKeyFile(t, dir, out)
	bin := needTool(t, "nsupdate", "bind9-dnsutils")
	// -v: over TCP this time.
	script := "server 127.0.0.1 " + itoa(s.UpdatePort) + "\nzone members.example.com\nupdate add pc.erin.members.example.com. 60 A 192.0.2.7\nsend\n"
	if out, err := run(t, script, bin, "-v", "-k", dir+"/users.keys"); err != nil {
		t.Fatalf("nsupdate -k: %v\n%s", err, out)
	}
	if r := query(t, s.Addr(), "pc.erin.members.example.com.", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("record missing after nsupdate -k: %v", r)
	}
}

// TestUnsignedAndCrossUserUpdatesRefused: without a key, or with a key for
// another user's names, an UPDATE is REFUSED and changes nothing.
func TestUnsignedAndCrossUserUpdatesRefused(t *testing.T) {
	s := startServer(t, corefile("", ""), alice, bob)
	before := serial(t, s.Addr())
	cases := []struct {
		name   string
		key    testKey
		update string
	}{
		{"unsigned", testKey{}, "update add laptop.alice.members.example.com. 60 A 192.0.2.1"},
		{"alice writes bob's name", alice, "update add laptop.bob.members.example.com. 60 A 192.0.2.1"},
		{"alice writes the apex", alice, "update add members.example.com. 60 TXT hello"},
		{"alice writes alicia", alice, "update add alicia.members.example.com. 60 A 192.0.2.1"},
		{"one good name and one of bob's", alice, "update add ok.alice.members.example.com. 60 A 192.0.2.1\nupdate add x.bob.members.example.com. 60 A 192.0.2.1"},
		{"bob deletes alice's name", bob, "update delete laptop.alice.members.example.com."},
	}
	for _, tc := range cases {
		out, err := nsupdate(t, s, tc.key, tc.update)
		if err == nil || !strings.Contains(out, "REFUSED") {
			t.Errorf("%s: nsupdate %v, want REFUSED:\n%s", tc.name, err, out)
		}
	}
	for _, name := range []string{"laptop.alice.members.example.com.", "ok.alice.members.example.com.", "laptop.bob.members.example.com.", "x.bob.members.example.com."} {
		if r := query(t, s.Addr(), name, dns.TypeA); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s exists after refused updates: %v", name, r)
		}
	}
	if after := serial(t, s.Addr()); after != before {
		t.Errorf("serial moved %d -> %d with every update refused", before, after)
	}
}

// TestTsigErrors: each TSIG failure gets RFC 8945's answer, and changes
// nothing.
func TestTsigErrors(t *testing.T) {
	s := startServer(t, corefile("", ""), alice, dave)
	add := func() *dns.Msg {
		m := new(dns.Msg).SetUpdate(zone)
		rr, _ := dns.NewRR("h.alice.members.example.com. 60 IN A 192.0.2.1")
		m.Insert([]dns.RR{rr})
		return m
	}
	wrongSecret := alice
	wrongSecret.secret = bob.secret
	wrongAlg := alice
	wrongAlg.alg = "hmac-sha512"
	unknown := alice
	unknown.name = "mallory.members.example.com."
	md5WrongSecret := dave
	md5WrongSecret.secret = alice.secret

	cases := []struct {
		name      string
		key       testKey
		at        time.Time
		tsigError uint16
	}{
		{"wrong secret", wrongSecret, time.Now(), dns.RcodeBadSig},
		{"md5 wrong secret", md5WrongSecret, time.Now(), dns.RcodeBadSig},
		{"unknown key", unknown, time.Now(), dns.RcodeBadKey},
		{"key used with another algorithm", wrongAlg, time.Now(), dns.RcodeBadKey},
		{"an hour late", alice, time.Now().Add(-time.Hour), dns.RcodeBadTime},
		{"an hour early", alice, time.Now().Add(time.Hour), dns.RcodeBadTime},
	}
	for _, tc := range cases {
		for _, netw := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+netw, func(t *testing.T) {
				r, raw, mac, _ := signed(t, netw, s.UpdateAddr(), tc.key, add(), tc.at)
				sig := r.IsTsig()
				if r.Rcode != dns.RcodeNotAuth || sig == nil || sig.Error != tc.tsigError {
					t.Fatalf("reply rcode %s, TSIG %v; want NOTAUTH with TSIG error %s", dns.RcodeToString[r.Rcode], sig, dns.RcodeToString[int(tc.tsigError)])
				}
				switch tc.tsigError {
				case dns.RcodeBadTime:
					// Signed with the key (the MAC verifies; only the time is off) and
					// carrying the server's time.
					if err := tsigauth.VerifyReply(raw, tc.key.secret, mac); err != nil {
						t.Errorf("BADTIME reply is not signed with the key: %v", err)
					}
					if sig.TimeSigned != uint64(tc.at.Unix()) {
						t.Errorf("BADTIME reply time signed %d, want the request's %d", sig.TimeSigned, tc.at.Unix())
					}
					other, _ := hex.DecodeString(sig.OtherData)
					if len(other) != 6 {
						t.Fatalf("BADTIME other data %q, want 6 octets of server time", sig.OtherData)
					}
					st := int64(binary.BigEndian.Uint64(append([]byte{0, 0}, other...)))
					if d := time.Now().Unix() - st; d < -5 || d > 5 {
						t.Errorf("BADTIME server time %d is %ds from ours", st, d)
					}
				default:
					if sig.MACSize != 0 {
						t.Errorf("%s reply carries a MAC; RFC 8945 §5.3.2 wants it unsigned", dns.RcodeToString[int(tc.tsigError)])
					}
				}
			})
		}
	}
	if r := query(t, s.Addr(), "h.alice.members.example.com.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("a refused update left its record: %v", r)
	}
	// And a good signature on a query gets a signed answer.
	m := new(dns.Msg).SetQuestion(zone, dns.TypeSOA)
	r, _, _, err := signed(t, "udp", s.Addr(), alice, m, time.Now())
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("signed query: %v, reply %v", err, r)
	}
}

// TestQuota: a user's records beyond the quota are REFUSED as a whole.
func TestQuota(t *testing.T) {
	s := startServer(t, corefile("", "max_records 4\n\t\tmax_bytes 4096"), alice)
	out, err := nsupdate(t, s, alice, "update add a.alice.members.example.com. 60 A 192.0.2.1\nupdate add b.alice.members.example.com. 60 A 192.0.2.2\nupdate add c.alice.members.example.com. 60 A 192.0.2.3")
	if err != nil {
		t.Fatalf("three records under a quota of four: %v\n%s", err, out)
	}
	out, err = nsupdate(t, s, alice, "update add d.alice.members.example.com. 60 A 192.0.2.4\nupdate add e.alice.members.example.com. 60 A 192.0.2.5")
	if err == nil || !strings.Contains(out, "REFUSED") {
		t.Fatalf("five records under a quota of four: %v, want REFUSED\n%s", err, out)
	}
	if r := query(t, s.Addr(), "d.alice.members.example.com.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("the refused update was applied in part: %v", r)
	}
	out, err = nsupdate(t, s, alice, "update add big.alice.members.example.com. 60 TXT "+strings.Repeat("\"x"+strings.Repeat("y", 250)+"\" ", 17))
	if err == nil || !strings.Contains(out, "REFUSED") {
		t.Fatalf("over the byte quota: %v, want REFUSED\n%s", err, out)
	}
	if out, err = nsupdate(t, s, alice, "update add d.alice.members.example.com. 60 A 192.0.2.4"); err != nil {
		t.Fatalf("the fourth record: %v\n%s", err, out)
	}
}

// TestPrerequisitesWithNsupdate: nsupdate's prereq forms get RFC 2136's
// RCODEs (the plugin tests cover every form in detail).
func TestPrerequisitesWithNsupdate(t *testing.T) {
	s := startServer(t, corefile("", ""), alice)
	if out, err := nsupdate(t, s, alice, "prereq nxdomain h.alice.members.example.com.\nupdate add h.alice.members.example.com. 60 A 192.0.2.1"); err != nil {
		t.Fatalf("prereq nxdomain on a new name: %v\n%s", err, out)
	}
	for _, tc := range []struct{ prereq, want string }{
		{"prereq nxdomain h.alice.members.example.com.", "YXDOMAIN"},
		{"prereq yxdomain nothing.alice.members.example.com.", "NXDOMAIN"},
		{"prereq nxrrset h.alice.members.example.com. A", "YXRRSET"},
		{"prereq yxrrset h.alice.members.example.com. AAAA", "NXRRSET"},
		{"prereq yxrrset h.alice.members.example.com. A 192.0.2.9", "NXRRSET"},
	} {
		out, err := nsupdate(t, s, alice, tc.prereq+"\nupdate add x.alice.members.example.com. 60 A 192.0.2.1")
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: %v, want %s\n%s", tc.prereq, err, tc.want, out)
		}
	}
	if out, err := nsupdate(t, s, alice, "prereq yxrrset h.alice.members.example.com. A 192.0.2.1\nupdate delete h.alice.members.example.com. A"); err != nil {
		t.Fatalf("a matching value-dependent prerequisite: %v\n%s", err, out)
	}
	if r := query(t, s.Addr(), "x.alice.members.example.com.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("an update with a failed prerequisite was applied: %v", r)
	}
}

// TestRateLimit: a key that sends more UPDATEs at once than its burst has
// the rest stopped: one answered REFUSED, the others dropped unanswered;
// another user's UPDATE goes through meanwhile; a moment later the key's
// UPDATEs pass again.
func TestRateLimit(t *testing.T) {
	s := startServer(t, corefile("", "rate 2 5"), alice, bob)
	const noAnswer = -1
	send := func(k testKey, name string) int {
		m := new(dns.Msg).SetUpdate(zone)
		rr, _ := dns.NewRR(name + " 60 IN A 192.0.2.1")
		m.Insert([]dns.RR{rr})
		m.SetTsig(k.name, k.miekgAlg(), 300, time.Now().Unix())
		c := &dns.Client{Net: "udp", Timeout: time.Second, TsigSecret: map[string]string{k.name: k.secret}}
		r, _, err := c.Exchange(m, s.UpdateAddr())
		if err != nil {
			return noAnswer
		}
		return r.Rcode
	}
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			rc := send(alice, fmt.Sprintf("f%d.alice.members.example.com.", i))
			mu.Lock()
			counts[rc]++
			mu.Unlock()
		})
	}
	wg.Wait()
	// The burst of 5 (and perhaps one more that the rate refilled); of the
	// rest one REFUSED (or two, a second apart), the others unanswered.
	if ok, refused := counts[dns.RcodeSuccess], counts[dns.RcodeRefused]; ok < 5 || ok > 7 || refused < 1 || refused > 2 || counts[noAnswer] != 20-ok-refused {
		t.Fatalf("20 UPDATEs at once with a burst of 5: %v (-1: no answer)", counts)
	}
	if rc := send(bob, "h.bob.members.example.com."); rc != dns.RcodeSuccess {
		t.Fatalf("bob's UPDATE while alice is over her rate: %d", rc)
	}
	time.Sleep(time.Second) // the bucket refills at 2 a second
	if rc := send(alice, "later.alice.members.example.com."); rc != dns.RcodeSuccess {
		t.Fatalf("alice's UPDATE a second later: %d", rc)
	}
}
