package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
	"github.com/openbtmm/btmm/test/coredns"
)

// shortLeases bounds leases to [2s, 4s], default 3s, so tests see them end.
var shortLeases = corefile("min 2s\n\t\tmax 4s\n\t\tdefault 3s", "")

// leasedUpdate adds the records, asking for lease seconds (none if
// lease < 0), signed with alice's key, and returns the reply.
func leasedUpdate(t *testing.T, addr string, lease int, records ...string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetUpdate(zone)
	for _, text := range records {
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatal(err)
		}
		m.Insert([]dns.RR{rr})
	}
	if lease >= 0 {
		m.SetEdns0(1232, false)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, updatelease.Lease{Lease: uint32(lease)}.Option())
	}
	r, _, _, err := signed(t, "udp", addr, alice, m, time.Now())
	if err != nil {
		t.Fatalf("reply TSIG: %v", err)
	}
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("update: %s", dns.RcodeToString[r.Rcode])
	}
	return r
}

func grantedLease(t *testing.T, r *dns.Msg) (uint32, bool) {
	t.Helper()
	l, ok, err := updatelease.From(r)
	if err != nil {
		t.Fatal(err)
	}
	return l.Lease, ok
}

func TestLeaseClamping(t *testing.T) {
	s := startServer(t, shortLeases, alice)
	for _, tc := range []struct{ ask, want int }{{1, 2}, {3, 3}, {100, 4}, {1 << 31, 2}} {
		r := leasedUpdate(t, s.UpdateAddr(), tc.ask, "h.alice.members.example.com. 60 IN A 192.0.2.1")
		if got, ok := grantedLease(t, r); !ok || int(got) != tc.want {
			t.Errorf("asked for %ds: granted %d (option present: %v), want %ds", tc.ask, got, ok, tc.want)
		}
	}
	r := leasedUpdate(t, s.UpdateAddr(), -1, "h.alice.members.example.com. 60 IN A 192.0.2.1")
	if _, ok := grantedLease(t, r); ok {
		t.Errorf("an update without the option got one back: %v", r)
	}
}

// waitGone polls name until it is gone and returns when that happened.
func waitGone(t *testing.T, addr, name string, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if r := query(t, addr, name, dns.TypeA); r.Rcode == dns.RcodeNameError {
			return time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s still there after %v", name, limit)
	return time.Time{}
}

func TestLeaseExpiryAndRenewal(t *testing.T) {
	s := startServer(t, shortLeases, alice)
	name := "h.alice.members.example.com."
	leasedUpdate(t, s.UpdateAddr(), 2, name+" 60 IN A 192.0.2.1")
	acked := time.Now()
	before := serial(t, s.Addr())
	time.Sleep(1500 * time.Millisecond)
	if r := query(t, s.Addr(), name, dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("the record went before its lease ended: %v", r)
	}
	gone := waitGone(t, s.Addr(), name, 5*time.Second)
	if late := gone.Sub(acked.Add(2 * time.Second)); late > time.Second {
		t.Errorf("the record went %v after its lease ended, want within a second", late)
	}
	for deadline := time.Now().Add(time.Second); serial(t, s.Addr()) == before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("expiry did not bump the serial (%d) within a second", before)
		}
	}

	// Renewal: the same record sent again before the end keeps it.
	leasedUpdate(t, s.UpdateAddr(), 2, name+" 60 IN A 192.0.2.1")
	time.Sleep(1200 * time.Millisecond)
	renewedSerial := serial(t, s.Addr())
	leasedUpdate(t, s.UpdateAddr(), 2, name+" 60 IN A 192.0.2.1")
	renewed := time.Now()
	if serial(t, s.Addr()) != renewedSerial {
		t.Errorf("a renewal changed the serial")
	}
	time.Sleep(time.Until(renewed.Add(1500 * time.Millisecond)))
	if r := query(t, s.Addr(), name, dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("a renewed record ended with its first lease: %v", r)
	}
	waitGone(t, s.Addr(), name, 3*time.Second)
}

// TestExpiryAcrossRestart: what expired while the server was down is gone
// when it is back, before it answers anything.
func TestExpiryAcrossRestart(t *testing.T) {
	s := startServer(t, shortLeases, alice)
	leasedUpdate(t, s.UpdateAddr(), 2, "short.alice.members.example.com. 60 IN A 192.0.2.1")
	leasedUpdate(t, s.UpdateAddr(), 4, "long.alice.members.example.com. 60 IN A 192.0.2.2")
	before := serial(t, s.Addr())
	s.Kill()
	time.Sleep(2500 * time.Millisecond)
	s.Start(zone)
	if r := query(t, s.Addr(), "short.alice.members.example.com.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("a record whose lease ended while the server was down is back: %v", r)
	}
	if r := query(t, s.Addr(), "long.alice.members.example.com.", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("a record with lease left is gone after the restart: %v", r)
	}
	if serial(t, s.Addr()) == before {
		t.Error("the expiry at start-up did not bump the serial")
	}
	waitGone(t, s.Addr(), "long.alice.members.example.com.", 3*time.Second)
}

// TestAcknowledgedUpdatesSurviveKill9: every acknowledged update is on
// disk, whenever the server dies.
func TestAcknowledgedUpdatesSurviveKill9(t *testing.T) {
	s := startServer(t, corefile("", ""), alice)
	const n = 30
	for i := range n {
		leasedUpdate(t, s.UpdateAddr(), 3600, fmt.Sprintf("h%d.alice.members.example.com. 60 IN A 192.0.2.%d", i, i+1))
	}
	s.Kill() // SIGKILL at once after the last acknowledgement
	s.Start(zone)
	for i := range n {
		if r := query(t, s.Addr(), fmt.Sprintf("h%d.alice.members.example.com.", i), dns.TypeA); len(r.Answer) != 1 {
			t.Fatalf("acknowledged update %d lost to kill -9: %v", i, r)
		}
	}
}

// TestOverTLS: tsig-update's TLS listener takes signed updates; a tls://
// server block with the same zone answers kdig's queries over TLS.
func TestOverTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key, _ := writeCert(t, dir)
	writeKeys(t, dir, alice)
	block := func(addr, extra, update string) string {
		return addr + " {\n" + extra + "\tbtmm members.example.com {\n\t\tkeys users.keys\n\t\tstore members.db\n\t}\n\tddul-lease\n\ttsig-update" + update + "\n}\n"
	}
	cf := block("members.example.com:{{PORT}}", "", " {\n\t\ttls 127.0.0.1:{{UPDATETLSPORT}} "+cert+" "+key+"\n\t}") +
		block("tls://members.example.com:{{TLSPORT}}", "\ttls "+cert+" "+key+"\n", "")
	s := coredns.New(t, dir, cf)
	s.Start(zone)

	m := new(dns.Msg).SetUpdate(zone)
	rr, _ := dns.NewRR("tls.alice.members.example.com. 60 IN AAAA fd00::7")
	m.Insert([]dns.RR{rr})
	r, _, _, err := signed(t, "tcp-tls", s.UpdateTLSAddr(), alice, m, time.Now())
	if err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("update over TLS: %v, %v", err, r)
	}
	// The update over TLS is visible on the plain listener: one store.
	if r := query(t, s.Addr(), "tls.alice.members.example.com.", dns.TypeAAAA); len(r.Answer) != 1 {
		t.Fatalf("plain DNS does not see the update made over TLS: %v", r)
	}
	kdig := needTool(t, "kdig", "knot-dnsutils")
	out, err := run(t, "", kdig, "@127.0.0.1", "-p", itoa(s.TLSPort), "+tls", "-y", alice.ySpec(), "tls.alice.members.example.com.", "AAAA")
	if err != nil || !strings.Contains(out, "fd00::7") || !strings.Contains(out, "TLS session") || !strings.Contains(out, "NOERROR") {
		t.Fatalf("kdig +tls with TSIG: %v\n%s", err, out)
	}
}

// TestReloadRereadsKeys: SIGUSR1 re-reads the key file, and no data is lost.
func TestReloadRereadsKeys(t *testing.T) {
	cf := strings.Replace(corefile("", ""), "\terrors\n", "\terrors\n\treload 2s\n", 1)
	s := startServer(t, cf, alice)
	if out, err := nsupdate(t, s, alice, "update add kept.alice.members.example.com. 60 A 192.0.2.1"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := nsupdate(t, s, dave, "update add pc.dave.members.example.com. 60 A 192.0.2.2"); err == nil || !strings.Contains(out, "BADKEY") {
		t.Fatalf("a key not yet in the file: %v, want BADKEY\n%s", err, out)
	}
	writeKeys(t, s.Dir, alice, dave)
	s.Signal(syscall.SIGUSR1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := nsupdate(t, s, dave, "update add pc.dave.members.example.com. 60 A 192.0.2.2")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new key does not work 10s after SIGUSR1: %v\n%s\n%s", err, out, s.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := query(t, s.Addr(), "kept.alice.members.example.com.", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("data lost in the reload: %v", r)
	}
	// Removing a key from the file revokes it on the next reload.
	writeKeys(t, s.Dir, alice)
	s.Signal(syscall.SIGUSR1)
	deadline = time.Now().Add(10 * time.Second)
	for {
		out, _ := nsupdate(t, s, dave, "update add pc2.dave.members.example.com. 60 A 192.0.2.3")
		if strings.Contains(out, "BADKEY") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a removed key still works 10s after SIGUSR1:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMalformedKeyFileStops: a broken key file is a clear start-up error
// that names the file and line.
func TestMalformedKeyFileStops(t *testing.T) {
	dir := t.TempDir()
	bad := "key \"alice.members.example.com.\" {\n\talgorithm hmac-sha256;\n\tsecret \"not base64!\";\n};\n"
	if err := os.WriteFile(filepath.Join(dir, "users.keys"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out := coredns.New(t, dir, corefile("", "")).StartFails()
	if !strings.Contains(out, "users.keys:3") {
		t.Fatalf("start-up error does not name users.keys:3:\n%s", out)
	}
}
