package test

import (
	"context"
	"crypto/tls"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/browse"
	"github.com/openbtmm/btmm/client/discover"
	sd "github.com/openbtmm/btmm/client/dnssd"
	"github.com/openbtmm/btmm/client/publish"
	"github.com/openbtmm/btmm/client/subscribe"
	"github.com/openbtmm/btmm/client/watch"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// changes collects a browser's reports.
type changes struct {
	mu  sync.Mutex
	got []string
	at  []time.Time
}

func (c *changes) report(ch browse.Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got, c.at = append(c.got, ch.String()), append(c.at, time.Now())
}

// wait returns when a line with each of want has come, after the first
// from.
func (c *changes) wait(t *testing.T, from int, within time.Duration, want ...string) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c.mu.Lock()
		var last time.Time
		found := 0
		for _, w := range want {
			for i := from; i < len(c.got); i++ {
				if strings.Contains(c.got[i], w) {
					found++
					if c.at[i].After(last) {
						last = c.at[i]
					}
					break
				}
			}
		}
		got := append([]string(nil), c.got...)
		c.mu.Unlock()
		if found == len(want) {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lines with %q within %v; got:\n%s", want, within, strings.Join(got, "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *changes) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// TestBrowse: against bin/coredns, a publisher publishes a host with ssh
// and an HTTP service; a browser of every type, by DNS Push (found by its
// SRV record) and by LLQ, lists both as they are published and shows them
// gone when the publisher stops.
func TestBrowse(t *testing.T) {
	s, pool := pushServer(t)
	key := keyfile.Key{Name: alice.name, Algorithm: alice.miekgAlg(), Secret: alice.secret}
	for _, mode := range []string{subscribe.DNSPush, subscribe.LLQ} {
		t.Run(mode, func(t *testing.T) {
			sc := subscribe.Config{Resolver: &discover.Resolver{Server: s.Addr()}, Zone: zone, Key: key, Push: mode,
				Transport: "tls", TLS: &tls.Config{RootCAs: pool, ServerName: "ns1.members.example.com"}}
			if mode == subscribe.LLQ {
				sc.Transport, sc.TLS, sc.Server = "tcp", nil, s.LLQAddr()
			}
			var c changes
			b := browse.New(alice.name, "", c.report)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			modes := make(chan string, 4)
			dial := func(ctx context.Context) (subscribe.Session, error) {
				sess, err := subscribe.Dial(ctx, sc)
				if err == nil {
					modes <- sess.Mode()
				}
				return sess, err
			}
			done := make(chan error, 1)
			go func() { done <- browse.Run(ctx, dial, b, false, t.Logf) }()
			select {
			case m := <-modes:
				if m != mode {
					t.Fatalf("session by %s, want %s", m, mode)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no session")
			}

			host := "desktop-" + strings.ReplaceAll(mode, "-", "")
			services, err := sd.ParseAll([]string{"ssh", "http:8080 path=/"})
			if err != nil {
				t.Fatal(err)
			}
			p := publish.New(publish.Config{Resolver: &discover.Resolver{}, Zone: zone, Key: key, Transport: "tcp", Server: s.UpdateAddr(), Lease: 4 * time.Second})
			pctx, stop := context.WithCancel(context.Background())
			pdone := make(chan error, 1)
			go func() { pdone <- p.Run(pctx) }()
			defer stop()
			time.Sleep(200 * time.Millisecond) // the browser is set up
			published := time.Now()
			p.Set(publish.Host{Zone: zone, User: "alice", Name: host, Label: "AutoTunnel-02-00-00-FF-FE-00-00-01",
				ULA: netip.MustParseAddr("fd00::1"), Public: netip.MustParseAddrPort("192.0.2.1:4500"), Key: "k", TTL: 60, Services: services})
			d := "." + alice.name
			seen := c.wait(t, 0, 5*time.Second,
				"+ "+host+"  _ssh._tcp  "+host+d+":22",
				"+ "+host+"  _http._tcp  "+host+d+":8080  path=/")
			t.Logf("%s: both services listed %v after Set", mode, seen.Sub(published).Round(time.Millisecond))
			n := c.len()
			stop()
			if err := <-pdone; err != nil {
				t.Fatal(err)
			}
			c.wait(t, n, 5*time.Second, "- "+host+"  _ssh._tcp", "- "+host+"  _http._tcp")
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestWatchDNSPush: the daemon's watcher, with push "auto" against a
// server that advertises DNS Push, follows the other host by DNS Push:
// its table shows the host as published, then its new address, then
// nothing once it is removed; with push "llq", by LLQ.
func TestWatchDNSPush(t *testing.T) {
	s, pool := pushServer(t)
	key := keyfile.Key{Name: alice.name, Algorithm: alice.miekgAlg(), Secret: alice.secret}
	for _, tc := range []struct{ push, mode string }{{"auto", "dns-push"}, {"llq", "llq"}} {
		t.Run(tc.push, func(t *testing.T) {
			cfg := watch.Config{Resolver: &discover.Resolver{Server: s.Addr()}, Zone: zone, Key: key, Self: "laptop.alice.members.example.com.",
				Transport: "tls", TLS: &tls.Config{RootCAs: pool, ServerName: "ns1.members.example.com"}, Push: tc.push, Logf: t.Logf}
			if tc.push == "llq" {
				cfg.Transport, cfg.TLS, cfg.Server = "tcp", nil, s.LLQAddr()
			}
			w := watch.New(cfg)
			ctx, cancel := context.WithCancel(context.Background())
			wdone := make(chan error, 1)
			go func() { wdone <- w.Run(ctx) }()
			defer func() { cancel(); <-wdone }()
			waitUntil(t, "the watcher's session", func() bool { return w.Status().Mode == tc.mode })

			p := publish.New(publish.Config{Resolver: &discover.Resolver{}, Zone: zone, Key: key, Transport: "tcp", Server: s.UpdateAddr(), Lease: 4 * time.Second})
			pctx, stop := context.WithCancel(context.Background())
			pdone := make(chan error, 1)
			go func() { pdone <- p.Run(pctx) }()
			defer stop()
			name := "desktop" + strings.ReplaceAll(tc.push, "-", "")
			h := publish.Host{Zone: zone, User: "alice", Name: name, Label: "AutoTunnel-02-00-00-FF-FE-00-00-02",
				ULA: netip.MustParseAddr("fd00::2"), Public: netip.MustParseAddrPort("192.0.2.1:4500"), Key: "k", TTL: 60}
			p.Set(h)
			host := name + ".alice.members.example.com."
			at := func(public string) func() bool {
				return func() bool {
					for _, peer := range w.Peers() {
						if peer.Host == host && peer.Public.String() == public && peer.ULA == h.ULA && peer.Key == "k" {
							return true
						}
					}
					return false
				}
			}
			waitUntil(t, "the peer", at("192.0.2.1:4500"))
			h.Public = netip.MustParseAddrPort("192.0.2.9:4501")
			p.Set(h)
			waitUntil(t, "the peer's new address", at("192.0.2.9:4501"))
			stop()
			<-pdone
			waitUntil(t, "the peer to go", func() bool {
				for _, peer := range w.Peers() {
					if peer.Host == host {
						return false
					}
				}
				return true
			})
			// The peer's subscriptions end just after it leaves the list.
			waitUntil(t, "one subscription left (the list)", func() bool { return w.Status().LLQs == 1 })
			if st := w.Status(); st.Mode != tc.mode {
				t.Errorf("status %+v, want mode %s", st, tc.mode)
			}
		})
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 5 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSharedServiceType: two hosts offer ssh. When one stops, its instance
// goes and the type stays in the enumeration (the other's prerequisite-
// guarded removal of it fails at the server); when the second stops, the
// type goes too. A third host's http stays throughout.
func TestSharedServiceType(t *testing.T) {
	s, _ := pushServer(t)
	key := keyfile.Key{Name: alice.name, Algorithm: alice.miekgAlg(), Secret: alice.secret}
	start := func(name string, specs ...string) (stop func()) {
		services, err := sd.ParseAll(specs)
		if err != nil {
			t.Fatal(err)
		}
		p := publish.New(publish.Config{Resolver: &discover.Resolver{}, Zone: zone, Key: key, Transport: "tcp", Server: s.UpdateAddr(), Lease: 4 * time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		p.Set(publish.Host{Zone: zone, User: "alice", Name: name, Label: "AutoTunnel-" + name,
			ULA: netip.MustParseAddr("fd00::3"), Public: netip.MustParseAddrPort("192.0.2.1:4500"), Key: "k", TTL: 60, Services: services})
		waitUntil(t, name+"'s services", func() bool {
			return len(query(t, s.Addr(), name+"._"+strings.Split(specs[0], ":")[0]+"._tcp."+alice.name, dns.TypeSRV).Answer) == 1
		})
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	enum := func() []string {
		var out []string
		for _, rr := range query(t, s.Addr(), "_services._dns-sd._udp."+alice.name, dns.TypePTR).Answer {
			out = append(out, rr.(*dns.PTR).Ptr)
		}
		slices.Sort(out)
		return out
	}
	stopA := start("a", "ssh")
	stopB := start("b", "ssh")
	stopC := start("c", "http")
	defer stopC()
	ssh, http := "_ssh._tcp."+alice.name, "_http._tcp."+alice.name
	if got := enum(); !slices.Equal(got, []string{http, ssh}) {
		t.Fatalf("enumeration %q", got)
	}
	stopA()
	if got := answers(query(t, s.Addr(), ssh, dns.TypePTR)); len(got) != 1 || !strings.Contains(got[0], "b._ssh._tcp") {
		t.Errorf("ssh instances after a stopped: %q", got)
	}
	if got := enum(); !slices.Equal(got, []string{http, ssh}) {
		t.Errorf("enumeration after a stopped: %q, want both types still", got)
	}
	stopB()
	if got := answers(query(t, s.Addr(), ssh, dns.TypePTR)); len(got) != 0 {
		t.Errorf("ssh instances after both stopped: %q", got)
	}
	if got := enum(); !slices.Equal(got, []string{http}) {
		t.Errorf("enumeration after both stopped: %q, want http only", got)
	}
}
