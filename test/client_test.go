package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/discover"
	"github.com/openbtmm/btmm/client/publish"
	"github.com/openbtmm/btmm/client/watch"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/test/coredns"
)

// fullServer runs bin/coredns as a real deployment would: plain DNS for
// discovery, updates over TLS, LLQs over TLS, found by SRV.
func fullServer(t *testing.T) (*coredns.Server, *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	cert, key, pool := writeCert(t, dir)
	writeKeys(t, dir, alice, bob)
	zoneBlock := func(addr, extra, update string) string {
		return fmt.Sprintf(`%s {
%s	btmm members.example.com {
		keys users.keys
		store members.db
		ns ns1.members.example.com. 127.0.0.1
	}
	ddul-lease {
		min 2s
		max 30s
		default 30s
	}
	tsig-update%s
	srv-discovery {
		update ns1.members.example.com. {{UPDATETLSPORT}} tls
		llq    ns1.members.example.com. {{LLQTLSPORT}} tls
	}
%s}
`, addr, extra, update, "")
	}
	cf := zoneBlock("members.example.com:{{PORT}}", "", " {\n\t\ttls 127.0.0.1:{{UPDATETLSPORT}} "+cert+" "+key+"\n\t}") +
		zoneBlock("tls://members.example.com:{{TLSPORT}}", "\ttls "+cert+" "+key+"\n", "")
	cf = cf[:len(cf)-2] + fmt.Sprintf("\tllq {\n\t\tudp 127.0.0.1:{{LLQPORT}}\n\t\ttcp off\n\t\ttls 127.0.0.1:{{LLQTLSPORT}} %s %s\n\t}\n}\n", cert, key)
	s := coredns.New(t, dir, cf)
	s.Start(zone)
	return s, &tls.Config{RootCAs: pool}
}

func aliceKey() keyfile.Key {
	return keyfile.Key{Name: alice.name, Algorithm: alice.miekgAlg(), Secret: alice.secret}
}

func host(name, label string, public string) publish.Host {
	return publish.Host{
		Zone: zone, User: "alice", Name: name, Label: label,
		ULA:    netip.MustParseAddr("fd12:3456:789a:1:211:22ff:fe33:" + fmt.Sprint(len(name))),
		Public: netip.MustParseAddrPort(public), Key: "cHVibGljLWtleS1vZi0" + name + "=", TTL: 60,
	}
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPublishAndWatch: two hosts of alice publish over TLS, found by SRV;
// each one's watcher sees the other by push, follows a move and sees a
// clean exit take the host away.
func TestPublishAndWatch(t *testing.T) {
	s, tlsConf := fullServer(t)
	res := &discover.Resolver{Server: s.Addr()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	pubCtx, stopDesktop := context.WithCancel(ctx)
	desktop := publish.New(publish.Config{Resolver: res, Zone: zone, Key: aliceKey(), TLS: tlsConf, Lease: 30 * time.Second, Logf: t.Logf})
	desktopDone := make(chan error, 1)
	go func() { desktopDone <- desktop.Run(pubCtx) }()
	dh := host("desktop", "AutoTunnel-02-11-22-FF-FE-33-44-55", "198.51.100.7:4500")
	desktop.Set(dh)

	w := watch.New(watch.Config{Resolver: res, Zone: zone, Key: aliceKey(), Self: "laptop.alice.members.example.com.", TLS: tlsConf, Lease: 15 * time.Minute, Logf: t.Logf})
	go w.Run(ctx)
	start := time.Now()
	peerIs := func(public string) func() bool {
		return func() bool {
			ps := w.Peers()
			return len(ps) == 1 && ps[0].Public.String() == public && ps[0].ULA == dh.ULA && ps[0].Key == dh.Key
		}
	}
	waitFor(t, 5*time.Second, "the laptop's watcher sees the desktop", peerIs("198.51.100.7:4500"))
	t.Logf("desktop seen after %v", time.Since(start))
	if st := w.Status(); st.Mode != "llq" {
		t.Fatalf("watcher status %+v, want LLQ mode", st)
	}
	// The server holds what dig would show.
	if r := query(t, s.Addr(), "_autotunnel._udp.desktop.alice.members.example.com.", dns.TypeSRV); len(r.Answer) != 1 || r.Answer[0].(*dns.SRV).Port != 4500 {
		t.Fatalf("SRV at the server: %v", r)
	}

	// The desktop's NAT changes its address: it republishes, the laptop
	// hears by push.
	moved := time.Now()
	dh.Public = netip.MustParseAddrPort("203.0.113.9:4501")
	desktop.Set(dh)
	waitFor(t, 2*time.Second, "the laptop's watcher follows the move", peerIs("203.0.113.9:4501"))
	t.Logf("move seen after %v", time.Since(moved))

	// A clean exit removes the records, and the laptop sees the desktop go.
	stopDesktop()
	if err := <-desktopDone; err != nil {
		t.Fatalf("desktop publisher: %v", err)
	}
	waitFor(t, 2*time.Second, "the desktop's clean exit reaches the watcher", func() bool { return len(w.Peers()) == 0 })
	for _, name := range []string{"_autotunnel._udp.desktop.alice.members.example.com.", "desktop.alice.members.example.com.", dh.LabelName()} {
		if r := query(t, s.Addr(), name, dns.TypeANY); len(r.Answer) != 0 {
			t.Fatalf("%s still has records after a clean exit: %v", name, r)
		}
	}
}

// TestPublishRefreshes: a publisher renews its records before their lease
// ends (a killed client's records expiring is a lab test, with kill -9).
func TestPublishRefreshes(t *testing.T) {
	s, tlsConf := fullServer(t)
	res := &discover.Resolver{Server: s.Addr()}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	p := publish.New(publish.Config{Resolver: res, Zone: zone, Key: aliceKey(), TLS: tlsConf, Lease: 2 * time.Second, Logf: t.Logf})
	h := host("pc", "AutoTunnel-02-00-00-FF-FE-00-00-01", "198.51.100.8:4500")
	p.Set(h)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 3*time.Second, "registered", func() bool { return len(query(t, s.Addr(), h.HostName(), dns.TypeAAAA).Answer) == 1 })
	for range 10 { // two and a half leases
		time.Sleep(500 * time.Millisecond)
		if r := query(t, s.Addr(), h.HostName(), dns.TypeAAAA); len(r.Answer) != 1 {
			t.Fatalf("records gone while their publisher refreshed them: %v", r)
		}
	}
	if st := p.Status(); st.Lease != "2s" || st.Error != "" || len(st.Records) != 6 {
		t.Fatalf("publisher status %+v", st)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWatchPollsWithoutLLQ: where the zone offers no LLQs, the watcher
// polls, says so, and still finds the other hosts.
func TestWatchPollsWithoutLLQ(t *testing.T) {
	dir := t.TempDir()
	writeKeys(t, dir, alice)
	s := coredns.New(t, dir, corefile("", ""))
	s.Start(zone)
	res := &discover.Resolver{Server: s.Addr()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := publish.New(publish.Config{Resolver: res, Zone: zone, Key: aliceKey(), Transport: "udp", Server: s.UpdateAddr(), Lease: time.Hour, Logf: t.Logf})
	p.Set(host("desktop", "AutoTunnel-02-11-22-FF-FE-33-44-56", "198.51.100.7:4500"))
	go p.Run(ctx)
	w := watch.New(watch.Config{Resolver: res, Zone: zone, Key: aliceKey(), Self: "laptop.alice.members.example.com.", Transport: "udp", PollInterval: 200 * time.Millisecond, Logf: t.Logf})
	go w.Run(ctx)
	waitFor(t, 5*time.Second, "the polling watcher sees the desktop", func() bool {
		ps := w.Peers()
		return len(ps) == 1 && ps[0].Public.String() == "198.51.100.7:4500"
	})
	if st := w.Status(); st.Mode != "poll" {
		t.Fatalf("watcher status %+v, want poll mode", st)
	}
}
