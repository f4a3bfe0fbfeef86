package test

import (
	"context"
	"fmt"
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
// their own update and LLQ listeners and short update leases.
func etcdServers(t *testing.T, cluster *etcdtest.Cluster, n int) []*coredns.Server {
	t.Helper()
	eps := cluster.Endpoints()
	var out []*coredns.Server
	for i := range n {
		order := append(append([]string(nil), eps[i%len(eps):]...), eps[:i%len(eps)]...)
		dir := t.TempDir()
		writeKeys(t, dir, alice, bob)
		cf := fmt.Sprintf(`members.example.com:{{PORT}} {
	btmm members.example.com {
		keys users.keys
		etcd %s {
			prefix /btmm/test
		}
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
		udp 127.0.0.1:{{LLQPORT}}
		tcp 127.0.0.1:{{LLQPORT}}
	}
}
`, strings.Join(order, " "))
		s := coredns.New(t, dir, cf)
		s.Start(zone)
		out = append(out, s)
	}
	return out
}

// TestEtcdTwoInstances: two bin/coredns on one three-member etcd cluster
// serve one zone: an UPDATE through A is answered by B at once; an LLQ
// held on B hears of an UPDATE made through A; a lease that ends gives
// one removal event on each instance.
func TestEtcdTwoInstances(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	st := etcdServers(t, cluster, 2)
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
