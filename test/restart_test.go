package test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/discover"
	"github.com/openbtmm/btmm/client/watch"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/test/coredns"
)

// TestServerRestartLLQs: 200 watchers (btmm-client's, one per user, each
// holding its LLQs over TCP) lose the server to kill -9; all of them have
// their LLQs again once it is back, and hear of changes made after. The
// log gives how long each took after the server's start (p50, max) and
// how the reconnections spread over time.
func TestServerRestartLLQs(t *testing.T) {
	const users = 200
	keys := make([]keyfile.Key, users)
	for i := range keys {
		sum := sha256.Sum256([]byte(fmt.Sprintf("restart user %d", i)))
		keys[i] = keyfile.Key{Name: fmt.Sprintf("u%d.%s", i, zone), Algorithm: dns.HmacSHA256, Secret: base64.StdEncoding.EncodeToString(sum[:])}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "users.keys"), keyfile.Format(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	s := coredns.New(t, dir, `members.example.com:{{PORT}} {
	btmm members.example.com {
		keys users.keys
		store members.db
	}
	ddul-lease
	tsig-update {
		udp 127.0.0.1:{{UPDATEPORT}}
		tcp 127.0.0.1:{{UPDATEPORT}}
	}
	llq {
		udp 127.0.0.1:{{LLQPORT}}
		tcp 127.0.0.1:{{LLQPORT}}
	}
}
`)
	s.Start(zone)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	watchers := make([]*watch.Watcher, users)
	for i, k := range keys {
		w := watch.New(watch.Config{Resolver: &discover.Resolver{}, Zone: zone, Key: k, Self: "self." + k.Name,
			Transport: "tcp", Server: s.LLQAddr(), Lease: 15 * time.Minute})
		watchers[i] = w
		wg.Go(func() { w.Run(ctx) })
	}
	// until waits for every watcher to satisfy ok, and returns when each did.
	until := func(what string, within time.Duration, ok func(watch.Status) bool) []time.Time {
		t.Helper()
		at := make([]time.Time, users)
		deadline := time.Now().Add(within)
		for left := users; left > 0; {
			for i, w := range watchers {
				if at[i].IsZero() && ok(w.Status()) {
					at[i] = time.Now()
					left--
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d watchers not %s within %v", left, users, what, within)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return at
	}
	llq := func(st watch.Status) bool { return st.Mode == "llq" && st.LLQs > 0 }
	until("watching", 30*time.Second, llq)

	s.Kill()
	until("aware of the loss", 30*time.Second, func(st watch.Status) bool { return !st.Since.IsZero() })
	s.Start(zone)
	start := time.Now()
	at := until("watching again", 30*time.Second, llq)
	took := make([]time.Duration, users)
	for i := range at {
		took[i] = at[i].Sub(start)
	}
	slices.Sort(took)
	spread := make([]int, 6) // per half second after the start, the last holds the rest
	for _, d := range took {
		spread[min(int(d/(500*time.Millisecond)), len(spread)-1)]++
	}
	t.Logf("%d watchers back after the server's start: p50 %v, max %v; per half second: %v",
		users, took[users/2].Round(time.Millisecond), took[users-1].Round(time.Millisecond), spread)

	// And they hear of a change made now: a host of the first user joins.
	host := "h." + keys[0].Name
	m := new(dns.Msg).SetUpdate(zone)
	for _, text := range []string{
		"_autotunnel._udp." + keys[0].Name + " 60 IN PTR " + host,
		"_autotunnel._udp." + host + " 60 IN SRV 0 0 4500 autotunnel-1." + keys[0].Name,
	} {
		rr, _ := dns.NewRR(text)
		m.Insert([]dns.RR{rr})
	}
	m.SetTsig(keys[0].Name, dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", TsigSecret: map[string]string{keys[0].Name: keys[0].Secret}}
	if r, _, err := c.Exchange(m, s.UpdateAddr()); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("update: %v %v", r, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(watchers[0].Peers()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first user's watcher did not hear of its new host")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
