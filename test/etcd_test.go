package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/llq"

	"github.com/openbtmm/btmm/plugin/pkg/store/etcdstore/etcdtest"
	"github.com/openbtmm/btmm/test/coredns"
)

// etcdServers starts n bin/coredns instances serving the zone from one
// etcd prefix on cluster, each given the members in another order, with
// their own update and LLQ listeners; leases is ddul-lease's block. On a
// TLS cluster they connect with the harness's client certificate.
func etcdServers(t *testing.T, cluster *etcdtest.Cluster, n int, leases string) []*coredns.Server {
	t.Helper()
	eps := cluster.Endpoints()
	var out []*coredns.Server
	for i := range n {
		order := append(append([]string(nil), eps[i%len(eps):]...), eps[:i%len(eps)]...)
		s := etcdServer(t, order, etcdTLS(cluster), leases)
		s.Start(zone)
		out = append(out, s)
	}
	return out
}

// etcdTLS is the etcd block's tls property for cluster: client
// certificate, key and CA; "" for a plain http cluster.
func etcdTLS(cluster *etcdtest.Cluster) string {
	if cluster.CAFile() == "" {
		return ""
	}
	return fmt.Sprintf("tls %s %s %s", cluster.ClientCertFile(), cluster.ClientKeyFile(), cluster.CAFile())
}

// etcdServer returns a bin/coredns instance, not started, serving the
// zone from prefix /btmm/test on the etcd endpoints; tls is the etcd
// block's tls property, if any, and leases ddul-lease's block.
func etcdServer(t *testing.T, endpoints []string, tls, leases string) *coredns.Server {
	t.Helper()
	dir := t.TempDir()
	writeKeys(t, dir, alice, bob)
	cf := fmt.Sprintf(`members.example.com:{{PORT}} {
	btmm members.example.com {
		keys users.keys
		admin admin.sock
		etcd %s {
			prefix /btmm/test
			%s
		}
		ns ns1.members.example.com. 127.0.0.1
	}
	ddul-lease {
		%s
	}
	tsig-update {
		udp 127.0.0.1:{{UPDATEPORT}}
		tcp 127.0.0.1:{{UPDATEPORT}}
		max_records 1000000
		rate 0
		max_bytes 100000000
	}
	llq {
		udp 127.0.0.1:{{LLQPORT}}
		tcp 127.0.0.1:{{LLQPORT}}
	}
}
`, strings.Join(endpoints, " "), tls, leases)
	return coredns.New(t, dir, cf)
}

// TestEtcdTLS: two bin/coredns on a cluster that serves https and wants
// client certificates, each configured with `tls CERT KEY CA`: an UPDATE
// through A is answered by B. An instance with only `tls CA` (it trusts
// the cluster but has no certificate to show) does not start, and says
// that the cluster refused it for want of a certificate.
func TestEtcdTLS(t *testing.T) {
	cluster := etcdtest.StartWith(t, 3, etcdtest.Options{TLS: true})
	st := etcdServers(t, cluster, 2, "")
	a, b := st[0], st[1]
	host := "tls.alice.members.example.com."
	if out, err := nsupdate(t, a, alice, "update add "+host+" 60 AAAA fd00::1"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r := query(t, b.Addr(), host, dns.TypeAAAA); len(r.Answer) != 1 {
		t.Fatalf("B after A's acknowledged UPDATE: %s %v", dns.RcodeToString[r.Rcode], answers(r))
	}

	// The client only sees its deadline pass (about 5 s) while the
	// members refuse the handshake; the server then says what a user
	// needs to fix.
	noCert := etcdServer(t, cluster.Endpoints(), "tls "+cluster.CAFile(), "")
	out := noCert.StartFails()
	for _, want := range []string{"etcd: creating zone", "tls: certificate required", "tls CERT KEY CA"} {
		if !strings.Contains(out, want) {
			t.Errorf("coredns with only tls CA: %q is not in its output:\n%s", want, out)
		}
	}
}

// TestEtcdUsers: users added and revoked through one instance's admin
// socket count on the other at once: a user added on A updates through
// B, and holds an LLQ there; revoked on A, its key gets BADKEY from B and
// its LLQ on B is ended.
func TestEtcdUsers(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	st := etcdServers(t, cluster, 2, "")
	a, b := st[0], st[1]
	admin := coredns.Built(t, "btmm-admin")
	out, err := run(t, "", admin, "-socket", filepath.Join(a.Dir, "admin.sock"), "add", "erin")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	erin := keyOf(t, out)
	start := time.Now()
	host := "h.erin.members.example.com."
	for tsigError(t, b, erin, host) != -1 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("B never accepted the key of a user added on A")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("B took the key of a user added on A %v after the add returned", time.Since(start).Round(time.Millisecond))
	onB := dialLLQ(t, b, "tcp", nil, erin)
	if _, _, err := onB.Setup(context.Background(), host, dns.TypeA); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "", admin, "-socket", filepath.Join(a.Dir, "admin.sock"), "revoke", "erin"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	start = time.Now()
	for tsigError(t, b, erin, host) != dns.RcodeBadKey {
		if time.Since(start) > 5*time.Second {
			t.Fatal("B still accepts the key of a user revoked on A")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-onB.Done():
	case <-time.After(5 * time.Second):
		t.Error("the revoked user's LLQ on B was not ended")
	}
	if r := query(t, b.Addr(), host, dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("the revoked user's records on B: %s %v", dns.RcodeToString[r.Rcode], answers(r))
	}
}

// TestEtcdTwoInstances: two bin/coredns on one three-member etcd cluster
// serve one zone: an UPDATE through A is answered by B at once; an LLQ
// held on B hears of an UPDATE made through A; a lease that ends gives
// one removal event on each instance.
func TestEtcdTwoInstances(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	st := etcdServers(t, cluster, 2, "min 2s\n\t\tmax 4s")
	a, b := st[0], st[1]

	for i := range 5 {
		host := fmt.Sprintf("h%d.alice.members.example.com.", i)
		if out, err := nsupdate(t, a, alice, "update add "+host+" 60 AAAA fd00::1"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if r := query(t, b.Addr(), host, dns.TypeAAAA); len(r.Answer) != 1 {
			t.Fatalf("B right after A's acknowledged UPDATE %d: %v", i, answers(r))
		}
	}
	if sa, sb := serial(t, a.Addr()), serial(t, b.Addr()); sa != sb {
		t.Fatalf("serials: A %d, B %d", sa, sb)
	}

	// An LLQ on B, an UPDATE through A.
	host := "watched.alice.members.example.com."
	onB := dialLLQ(t, b, "tcp", nil, alice)
	onA := dialLLQ(t, a, "tcp", nil, alice)
	ctx := context.Background()
	for _, c := range []*llq.Client{onB, onA} {
		if _, answers, err := c.Setup(ctx, host, dns.TypeAAAA); err != nil || len(answers) != 0 {
			t.Fatalf("LLQ setup: %v %v", answers, err)
		}
	}
	start := time.Now()
	leasedUpdate(t, a.UpdateAddr(), 2, host+" 60 IN AAAA fd00::7")
	for name, c := range map[string]*llq.Client{"B": onB, "A": onA} {
		ev := nextEvent(t, c, 5*time.Second)
		if len(ev.Added) != 1 || !strings.Contains(ev.Added[0].String(), "fd00::7") {
			t.Fatalf("%s's LLQ event: %+v", name, ev)
		}
	}
	t.Logf("the LLQ on B heard of the UPDATE through A after %v", time.Since(start).Round(time.Millisecond))

	// The 2 s lease ends: one removal on each, whichever instance swept.
	for name, c := range map[string]*llq.Client{"B": onB, "A": onA} {
		ev := nextEvent(t, c, 10*time.Second)
		if len(ev.Removed) != 1 || len(ev.Added) != 0 {
			t.Fatalf("%s's lease-end event: %+v", name, ev)
		}
	}
	for _, c := range []*llq.Client{onB, onA} {
		noEvent(t, c, time.Second)
	}
}

// TestEtcdKillUnderLoad: 32 clients send UPDATEs through instance A,
// which is killed with SIGKILL at a random moment; every UPDATE A
// acknowledged is answered by instance B, with A still down.
func TestEtcdKillUnderLoad(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	st := etcdServers(t, cluster, 2, "")
	a, b := st[0], st[1]
	total := 0
	for trial := range 3 {
		load := startUpdateLoad(t, a.UpdateAddr(), fmt.Sprintf("t%d", trial), 32)
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		a.Kill()
		acked := load.stop()
		if len(acked) == 0 {
			t.Fatalf("trial %d: no UPDATE acknowledged before the kill\n%s", trial, a.Output())
		}
		if lost := missing(t, b.Addr(), acked, func(name string, rcode int) {
			t.Errorf("trial %d: %s was acknowledged by A and B does not have it: %v", trial, name, dns.RcodeToString[rcode])
		}); lost > 0 {
			t.Fatalf("trial %d: %d of %d acknowledged UPDATEs lost", trial, lost, len(acked))
		}
		total += len(acked)
		a.Start(zone)
	}
	t.Logf("3 trials: %d UPDATEs acknowledged by A, all answered by B after A's kill -9", total)
}

// TestEtcdMemberLoss: UPDATEs through bin/coredns go on when one member of
// three (the leader) is killed, get SERVFAIL when two are, and work again
// when one comes back; queries are answered throughout.
func TestEtcdMemberLoss(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	s := etcdServers(t, cluster, 1, "")[0]
	n := 0
	var acked []string
	c := &dns.Client{Net: "tcp", Timeout: 10 * time.Second, TsigSecret: map[string]string{alice.name: alice.secret}}
	// try sends one UPDATE and returns its rcode, -1 for no answer.
	try := func() int {
		n++
		m := new(dns.Msg).SetUpdate(zone)
		rr, _ := dns.NewRR(fmt.Sprintf("m%d.alice.members.example.com. 60 IN A 192.0.2.1", n))
		m.Insert([]dns.RR{rr})
		m.SetTsig(alice.name, alice.miekgAlg(), 300, time.Now().Unix())
		r, _, err := c.Exchange(m, s.UpdateAddr())
		if err != nil {
			return -1
		}
		if r.Rcode == dns.RcodeSuccess {
			acked = append(acked, rr.Header().Name)
		}
		return r.Rcode
	}
	// within tries UPDATEs until one gets rcode or d passes, and says how long it took.
	within := func(rcode int, d time.Duration) (time.Duration, bool) {
		start := time.Now()
		for time.Since(start) < d {
			if try() == rcode {
				return time.Since(start), true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return d, false
	}
	if _, ok := within(dns.RcodeSuccess, 5*time.Second); !ok {
		t.Fatal("no update succeeds with the whole cluster")
	}
	leader := cluster.Leader(t)
	cluster.Stop(leader)
	took, ok := within(dns.RcodeSuccess, 10*time.Second)
	if !ok {
		t.Fatal("updates stopped with two members of three")
	}
	t.Logf("the leader killed: updates again within %v", took.Round(time.Millisecond))

	second := (leader + 1) % 3
	cluster.Stop(second)
	if _, ok := within(dns.RcodeServerFailure, 15*time.Second); !ok {
		t.Fatal("with one member of three, no update got SERVFAIL")
	}
	if r := query(t, s.Addr(), acked[0], dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("without a quorum, a query for %s: %s %v\n%s", acked[0], dns.RcodeToString[r.Rcode], answers(r), s.Output())
	}
	cluster.Restart(second)
	took, ok = within(dns.RcodeSuccess, 15*time.Second)
	if !ok {
		t.Fatal("updates do not work again with two members back")
	}
	t.Logf("a member back: updates again within %v", took.Round(time.Millisecond))
}
