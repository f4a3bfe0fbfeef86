package watch

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/discover"
)

const (
	domain = "alice.members.example.com."
	list   = "_autotunnel._udp." + domain
	self   = "laptop." + domain
)

// host is one of alice's hosts as it publishes itself (client/publish's
// records).
type host struct {
	name, label string
	ula         string // at the label, and at the host name
	ip          string
	port        int
	key         string
}

func (h host) fqdn() string { return h.name + "." + domain }
func (h host) ptr() string  { return list + " 60 IN PTR " + h.fqdn() }
func (h host) srv() string {
	return fmt.Sprintf("_autotunnel._udp.%s 60 IN SRV 0 0 %d %s.%s", h.fqdn(), h.port, h.label, domain)
}
func (h host) a() string    { return h.label + "." + domain + " 60 IN A " + h.ip }
func (h host) aaaa() string { return h.label + "." + domain + " 60 IN AAAA " + h.ula }
func (h host) txt() string {
	return h.label + "." + domain + ` 60 IN TXT "txtvers=1" "pk=` + h.key + `" "ciphers=aes256gcm,chacha20poly1305"`
}
func (h host) hostAAAA() string { return h.fqdn() + " 60 IN AAAA " + h.ula }

func (h host) records() []string {
	return []string{h.ptr(), h.srv(), h.a(), h.aaaa(), h.txt(), h.hostAAAA()}
}

// peer is what the watcher should make of h.
func (h host) peer() Peer {
	return Peer{
		Host:   h.fqdn(),
		Label:  h.label + "." + domain,
		ULA:    netip.MustParseAddr(h.ula),
		Public: netip.AddrPortFrom(netip.MustParseAddr(h.ip), uint16(h.port)),
		Key:    h.key,
	}
}

var (
	laptop  = host{"laptop", "AutoTunnel-02-00-00-FF-FE-00-00-01", "fd5e:1b2c:3d4e:1::1", "203.0.113.1", 4500, "bGFwdG9wIGtleSBvZiB0aGlydHktdHdvIG9jdGV0cyEhISE="}
	desktop = host{"desktop", "AutoTunnel-02-00-00-FF-FE-00-00-02", "fd5e:1b2c:3d4e:1::2", "198.51.100.2", 61002, "ZGVza3RvcCBrZXkgb2YgdGhpcnR5LXR3byBvY3RldHMhISE="}
	server  = host{"server", "AutoTunnel-02-00-00-FF-FE-00-00-03", "fd5e:1b2c:3d4e:1::3", "192.0.2.3", 5353, "c2VydmVyIGtleSBvZiB0aGlydHktdHdvIG9jdGV0cyEhISE="}
)

func recordsOf(hs ...host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.records()...)
	}
	return out
}

// samePeers compares the tables, labels without regard to case (DNS
// names), and ignores Changed.
func samePeers(got, want []Peer) bool {
	return slices.EqualFunc(got, want, func(a, b Peer) bool {
		return a.Host == b.Host && strings.EqualFold(a.Label, b.Label) && a.ULA == b.ULA && a.Public == b.Public && a.Public6 == b.Public6 && a.Key == b.Key
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitPeers waits until the table is want.
func waitPeers(t *testing.T, w *Watcher, what string, want ...Peer) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !samePeers(w.Peers(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: peers %+v, want %+v", what, w.Peers(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// start runs a watcher of alice's hosts from the laptop, with LLQs over
// TCP to s, until the test ends.
func start(t *testing.T, s *llqServer, edit func(*Config)) *Watcher {
	cfg := Config{Resolver: &discover.Resolver{}, Zone: "members.example.com.", Key: aliceKey,
		Self: "Laptop.Alice.Members.Example.COM.", Transport: "tcp", Server: s.addr}
	if edit != nil {
		edit(&cfg)
	}
	w := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return w
}

// changed waits for the watcher's signal.
func changed(t *testing.T, w *Watcher) {
	t.Helper()
	select {
	case <-w.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("no change signalled")
	}
}

// From the host list and each host's SRV, A, AAAA and TXT records, the
// watcher builds one peer per other host: the ULA from the AAAA at the
// label, the public endpoint from the A and the SRV's port, the key from
// the TXT's pk=. The host itself is left out. The table is complete when
// the first change is signalled; every LLQ and query is signed.
func TestPeers(t *testing.T) {
	// The host names' AAAA differ from the labels', to tell which is used.
	d, sv := desktop, server
	recs := recordsOf(laptop, d, sv)
	recs = slices.DeleteFunc(recs, func(r string) bool { return r == d.hostAAAA() || r == sv.hostAAAA() })
	recs = append(recs, d.fqdn()+" 60 IN AAAA fd00::bad", sv.fqdn()+" 60 IN AAAA fd00::bad")
	s := newLLQServer(t, recs...)
	w := start(t, s, nil)
	changed(t, w)
	if got, want := w.Peers(), []Peer{desktop.peer(), server.peer()}; !samePeers(got, want) {
		t.Errorf("peers %+v, want %+v", got, want)
	}
	for _, p := range w.Peers() {
		if p.Changed.IsZero() {
			t.Errorf("%s: Changed not set", p.Host)
		}
	}
	// The list, and SRV, A, AAAA, TXT for each of the two other hosts
	// (counted just after the change is signalled).
	waitFor(t, "the LLQ count", func() bool { return w.Status().LLQs != 0 })
	st := w.Status()
	if st.Mode != "llq" || st.Server != "tcp://"+s.addr || st.LLQs != 9 || st.Error != "" {
		t.Errorf("status %+v, want llq mode on tcp://%s with 9 LLQs", st, s.addr)
	}
	for _, l := range s.gotSetups() {
		if strings.Contains(strings.ToLower(l.q.Name), "laptop") || strings.Contains(strings.ToLower(l.q.Name), "02-00-00-ff-fe-00-00-01") {
			t.Errorf("an LLQ on the host's own %s", l.q.Name)
		}
	}
	if _, unsigned := s.counts(); unsigned != 0 {
		t.Errorf("%d requests without a valid TSIG", unsigned)
	}
}

// The server's events keep the table current: a host that moves, changes
// its key or its label, joins or leaves. Each change is signalled.
func TestEvents(t *testing.T) {
	s := newLLQServer(t, recordsOf(laptop, desktop)...)
	w := start(t, s, nil)
	changed(t, w)
	waitPeers(t, w, "the desktop", desktop.peer())
	first := w.Peers()[0].Changed

	// The desktop moves.
	moved := desktop
	moved.ip = "198.51.100.77"
	s.del(desktop.a())
	s.add(moved.a())
	changed(t, w)
	waitPeers(t, w, "the desktop's new address", moved.peer())
	if c := w.Peers()[0].Changed; !c.After(first) {
		t.Errorf("Changed %v, not after %v", c, first)
	}

	// It has a new key.
	rekeyed := moved
	rekeyed.key = "bmV3IGRlc2t0b3Aga2V5IG9mIHRoaXJ0eS10d28gb2N0ZXQ="
	s.add(rekeyed.txt())
	s.del(moved.txt())
	changed(t, w)
	waitPeers(t, w, "the desktop's new key", rekeyed.peer())

	// The server joins: its records first, then its entry in the list.
	s.add(server.srv(), server.a(), server.aaaa(), server.txt(), server.hostAAAA())
	s.add(server.ptr())
	changed(t, w)
	waitPeers(t, w, "the server", rekeyed.peer(), server.peer())

	// The server gets a new label and port: what is at the new label
	// counts, and the LLQs at the old one end.
	relabeled := server
	relabeled.label, relabeled.port, relabeled.ula = "AutoTunnel-02-00-00-FF-FE-00-00-33", 5354, "fd5e:1b2c:3d4e:1::33"
	s.add(relabeled.a(), relabeled.aaaa(), relabeled.txt())
	s.add(relabeled.srv())
	s.del(server.srv())
	waitPeers(t, w, "the server's new label", rekeyed.peer(), relabeled.peer())
	waitFor(t, "the LLQs at the old label to end", func() bool {
		for _, l := range s.live() {
			if strings.HasPrefix(l, strings.ToLower(server.label)) {
				return false
			}
		}
		return true
	})

	// The desktop leaves: out of the table, and its LLQs end.
	s.del(desktop.ptr())
	changed(t, w)
	waitPeers(t, w, "the desktop to leave", relabeled.peer())
	waitFor(t, "the desktop's LLQs to end", func() bool {
		for _, l := range s.live() {
			if strings.Contains(l, "desktop") || strings.HasPrefix(l, strings.ToLower(desktop.label)) {
				return false
			}
		}
		return true
	})
	if got := len(s.live()); got != 5 {
		t.Errorf("%d live LLQs %q, want 5 (the list and the server's 4)", got, s.live())
	}
}

// A host with a global IPv6 address has a second AAAA at its label, and
// the IPv6 port in its TXT's port6= when it differs from the SRV's: the
// peer gets Public6 beside Public, and keeps it when the A goes (IPv6
// alone); the ULA stays the AAAA inside fc00::/7 whatever the order.
func TestIPv6Endpoint(t *testing.T) {
	s := newLLQServer(t, recordsOf(laptop, desktop)...)
	w := start(t, s, nil)
	changed(t, w)
	waitPeers(t, w, "the desktop", desktop.peer())

	want := desktop.peer()
	want.Public6 = netip.MustParseAddrPort("[2001:db8:2:1::11]:4500")
	txt6 := desktop.label + "." + domain + ` 60 IN TXT "txtvers=1" "pk=` + desktop.key + `" "ciphers=aes256gcm,chacha20poly1305" "port6=4500"`
	s.add(desktop.label + "." + domain + " 60 IN AAAA 2001:db8:2:1::11")
	s.add(txt6)
	s.del(desktop.txt())
	changed(t, w)
	waitPeers(t, w, "the desktop's IPv6 endpoint", want)

	s.del(desktop.a())
	want.Public = netip.AddrPort{}
	changed(t, w)
	waitPeers(t, w, "the desktop on IPv6 alone", want)
}

// A host with records missing (no AAAA at its label, no key in its TXT,
// or no SRV at all) yields no usable peer (the daemon needs the ULA,
// public address and key), and does not disturb the others; once its
// records are complete, it is usable.
func TestIncompleteHost(t *testing.T) {
	broken := host{"broken", "AutoTunnel-02-00-00-FF-FE-00-00-04", "fd5e:1b2c:3d4e:1::4", "192.0.2.4", 4504, "YnJva2VuIGtleSBvZiB0aGlydHktdHdvIG9jdGV0cyEhISE="}
	recs := recordsOf(laptop, desktop)
	recs = append(recs, broken.ptr(), broken.srv(), broken.a(), broken.label+"."+domain+` 60 IN TXT "txtvers=1" "ciphers=aes256gcm"`)
	nosrv := host{name: "nosrv"}
	recs = append(recs, nosrv.ptr())
	s := newLLQServer(t, recs...)
	w := start(t, s, nil)
	changed(t, w)

	usable := func(p Peer) bool { return p.ULA.IsValid() && p.Public.IsValid() && p.Key != "" }
	var good []Peer
	for _, p := range w.Peers() {
		if usable(p) {
			good = append(good, p)
		}
	}
	if want := []Peer{desktop.peer()}; !samePeers(good, want) {
		t.Errorf("usable peers %+v, want only %+v", good, want)
	}
	for _, p := range w.Peers() {
		if p.Host != desktop.fqdn() && (p.ULA == desktop.peer().ULA || p.Key == desktop.key || p.Public == desktop.peer().Public) {
			t.Errorf("%s has the desktop's data: %+v", p.Host, p)
		}
	}

	// The broken host completes its records.
	s.add(broken.aaaa())
	s.add(broken.txt())
	waitFor(t, "the broken host to be usable", func() bool {
		for _, p := range w.Peers() {
			if p.Host == broken.fqdn() {
				return samePeers([]Peer{p}, []Peer{broken.peer()})
			}
		}
		return false
	})
}

// Where the server refuses LLQs, the watcher polls with signed queries,
// says so, and still follows hosts that join and leave.
func TestPollWhenRefused(t *testing.T) {
	s := newLLQServer(t, recordsOf(laptop, desktop)...)
	s.set(func(s *llqServer) { s.refuse = true })
	w := start(t, s, func(c *Config) { c.PollInterval = 50 * time.Millisecond })
	waitPeers(t, w, "the desktop", desktop.peer())
	if st := w.Status(); st.Mode != "poll" || st.Server != s.addr || st.LLQs != 0 {
		t.Errorf("status %+v, want poll mode on %s", st, s.addr)
	}

	s.add(server.records()...)
	waitPeers(t, w, "the server to join", desktop.peer(), server.peer())
	s.del(desktop.ptr())
	waitPeers(t, w, "the desktop to leave", server.peer())

	queries, unsigned := s.counts()
	if queries == 0 || unsigned != 0 {
		t.Errorf("%d polling queries, %d requests without a valid TSIG; want all signed", queries, unsigned)
	}
}

// Where no LLQ server is offered (no SRV record), the watcher polls the
// resolver it was given.
func TestPollWhenNotOffered(t *testing.T) {
	s := newLLQServer(t, recordsOf(laptop, desktop)...)
	w := start(t, s, func(c *Config) {
		c.Server = ""
		c.Resolver = &discover.Resolver{Server: s.addr, Timeout: 2 * time.Second}
		c.PollInterval = 50 * time.Millisecond
	})
	waitPeers(t, w, "the desktop", desktop.peer())
	if st := w.Status(); st.Mode != "poll" || st.Server != s.addr {
		t.Errorf("status %+v, want poll mode on %s", st, s.addr)
	}
	if n := len(s.gotSetups()); n != 0 {
		t.Errorf("%d LLQ setups", n)
	}
	if _, unsigned := s.counts(); unsigned != 0 {
		t.Errorf("%d requests without a valid TSIG", unsigned)
	}
}

// Reconnect, and a connection the server drops, both set the LLQs up
// again on a new connection; the table stays, and later events count.
func TestSetUpAgain(t *testing.T) {
	for _, how := range []string{"Reconnect", "server drops"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			s := newLLQServer(t, recordsOf(laptop, desktop)...)
			w := start(t, s, nil)
			changed(t, w)
			waitPeers(t, w, "the desktop", desktop.peer())
			before := s.gotSetups()
			if how == "Reconnect" {
				w.Reconnect()
			} else {
				s.dropConns()
			}
			waitFor(t, "a new setup of the list", func() bool {
				for _, l := range s.gotSetups()[len(before):] {
					if l.q.Name == list && l.client != before[0].client {
						return true
					}
				}
				return false
			})
			waitFor(t, "the LLQs on the new connection", func() bool { return w.Status().Mode == "llq" && w.Status().LLQs == 5 })
			if !samePeers(w.Peers(), []Peer{desktop.peer()}) {
				t.Errorf("peers %+v after setting up again", w.Peers())
			}
			moved := desktop
			moved.ip = "198.51.100.99"
			s.del(desktop.a())
			s.add(moved.a())
			waitPeers(t, w, "the move, on the new connection", moved.peer())
		})
	}
}

// A poll that fails (the server answers SERVFAIL) is not an empty host
// list: the table stays as it was, the status tells of the failure, and
// polling goes on once the server is well again.
func TestPollFailureKeepsTable(t *testing.T) {
	s := newLLQServer(t, recordsOf(laptop, desktop)...)
	s.set(func(s *llqServer) { s.refuse = true })
	w := start(t, s, func(c *Config) { c.PollInterval = 20 * time.Millisecond })
	waitPeers(t, w, "the desktop", desktop.peer())

	s.set(func(s *llqServer) { s.servfail = true })
	waitFor(t, "a failed poll", func() bool {
		return !samePeers(w.Peers(), []Peer{desktop.peer()}) || strings.Contains(w.Status().Error, "SERVFAIL")
	})
	if !samePeers(w.Peers(), []Peer{desktop.peer()}) {
		t.Errorf("peers %+v while the server fails, want the desktop still", w.Peers())
	}
	if st := w.Status(); !strings.Contains(st.Error, "SERVFAIL") {
		t.Errorf("status %+v, want the SERVFAIL", st)
	}

	s.set(func(s *llqServer) { s.servfail = false })
	s.add(server.records()...)
	waitPeers(t, w, "the server, once polls work again", desktop.peer(), server.peer())
}

// Polled answers must carry the server's signature, as every LLQ reply
// and event does: unsigned ones (a forger on the path) are not taken.
func TestPollUnsignedReply(t *testing.T) {
	s := newLLQServer(t, recordsOf(laptop, desktop)...)
	s.set(func(s *llqServer) { s.refuse = true })
	w := start(t, s, func(c *Config) { c.PollInterval = 20 * time.Millisecond })
	waitPeers(t, w, "the desktop", desktop.peer())

	forged := desktop
	forged.ip = "192.0.2.66"
	s.set(func(s *llqServer) { s.forge = true })
	s.del(desktop.a())
	s.add(forged.a())
	waitFor(t, "the unsigned reply to be taken or refused", func() bool {
		return !samePeers(w.Peers(), []Peer{desktop.peer()}) || strings.Contains(w.Status().Error, "not signed")
	})
	if !samePeers(w.Peers(), []Peer{desktop.peer()}) {
		t.Errorf("peers %+v from unsigned answers, want %+v", w.Peers(), desktop.peer())
	}

	// Signed again, the same data is taken.
	s.set(func(s *llqServer) { s.forge = false })
	waitPeers(t, w, "the signed address", forged.peer())
}

// TestCache: the table is kept in CacheFile. A watcher started while the
// server cannot be reached starts from it (marked cached, the host itself
// left out), says since when the server is unreachable, and keeps the
// table; once the server answers, the table is the server's and the file
// follows.
func TestCache(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "peers.json")
	// The last table, as a watcher left it (with the host itself in it,
	// which a watcher never writes, to show that it is left out).
	b, _ := json.Marshal([]Peer{desktop.peer(), laptop.peer()})
	if err := os.WriteFile(cache, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// A server that is not there: a port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	w := start(t, &llqServer{addr: addr}, func(c *Config) { c.CacheFile = cache })
	changed(t, w)
	if got := w.Peers(); !samePeers(got, []Peer{desktop.peer()}) {
		t.Fatalf("peers from the cache %+v, want the desktop", got)
	}
	waitFor(t, "the server's absence in the status", func() bool { return !w.Status().Since.IsZero() })
	if st := w.Status(); !st.Cached || st.Mode != "connecting" || st.Error == "" {
		t.Errorf("status %+v, want cached, connecting, with the error", st)
	}
	if got := w.Peers(); !samePeers(got, []Peer{desktop.peer()}) {
		t.Fatalf("peers while the server is away %+v, want the desktop still", got)
	}

	// A server that answers: its table replaces the cached one.
	s := newLLQServer(t, recordsOf(laptop, server)...)
	sessions := make(chan struct{}, 10)
	w2 := start(t, s, func(c *Config) { c.CacheFile = cache; c.OnSession = func() { sessions <- struct{}{} } })
	waitPeers(t, w2, "the server's table", server.peer())
	select {
	case <-sessions:
	case <-time.After(5 * time.Second):
		t.Fatal("OnSession not called once the session had its table")
	}
	if st := w2.Status(); st.Cached || !st.Since.IsZero() {
		t.Errorf("status %+v once the server answered", st)
	}
	var saved []Peer
	b, _ = os.ReadFile(cache)
	if err := json.Unmarshal(b, &saved); err != nil || !samePeers(saved, []Peer{server.peer()}) {
		t.Errorf("the file holds %+v (%v), want the server's table", saved, err)
	}
}

// The TXT's cert= string is part of the peer; Config.Extra's names are
// followed, and OnRecords hears each change before the table's signal.
func TestCertAndExtra(t *testing.T) {
	rl := "_btmm-revoked." + domain
	d := desktop
	certTXT := d.label + "." + domain + ` 60 IN TXT "txtvers=1" "pk=` + d.key + `" "cert=AQID" "ciphers=aes256gcm"`
	recs := slices.DeleteFunc(recordsOf(laptop, d), func(r string) bool { return r == d.txt() })
	recs = append(recs, certTXT, rl+` 60 IN TXT "txtvers=1" "rl=AAAA"`)
	s := newLLQServer(t, recs...)
	var mu sync.Mutex
	var got []string
	w := start(t, s, func(c *Config) {
		c.Extra = []string{rl}
		c.OnRecords = func(name string, rrs []dns.RR) {
			mu.Lock()
			defer mu.Unlock()
			for _, rr := range rrs {
				got = append(got, name+" "+strings.Join(rr.(*dns.TXT).Txt, " "))
			}
		}
	})
	changed(t, w)
	if p := w.Peers(); len(p) != 1 || !slices.Equal(p[0].Certs, []string{"cert=AQID"}) {
		t.Fatalf("peers %+v", p)
	}
	s.add(rl + ` 60 IN TXT "txtvers=1" "rl=BBBB"`)
	waitFor(t, "the new revocation list", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(got, rl+" txtvers=1 rl=BBBB")
	})
	mu.Lock()
	defer mu.Unlock()
	if got[0] != rl+" txtvers=1 rl=AAAA" {
		t.Fatalf("OnRecords: %q", got)
	}
}
