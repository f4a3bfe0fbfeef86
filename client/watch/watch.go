// Package watch keeps a table of the user's other hosts (RFC 6281 §5.3):
// where each can be reached, learnt from subscriptions on the host list
// and on each host's records, and kept current by the server's events:
// DNS Push (RFC 8765) where the server offers it, Long-Lived Queries
// (RFC 8764) where not, or the one Config.Push names (package
// subscribe). Where the server offers neither, it polls, and says so.
package watch

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/backoff"
	"github.com/openbtmm/btmm/client/discover"
	"github.com/openbtmm/btmm/client/llq"
	"github.com/openbtmm/btmm/client/publish"
	"github.com/openbtmm/btmm/client/subscribe"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// Peer is one of the user's other hosts.
type Peer struct {
	Host    string         `json:"host"`             // laptop.alice.members.example.com.
	Label   string         `json:"label"`            // AutoTunnel-….alice.members.example.com.
	ULA     netip.Addr     `json:"ula,omitzero"`     // its tunnel address
	Public  netip.AddrPort `json:"public,omitzero"`  // its NAT's address and mapped port
	Public6 netip.AddrPort `json:"public6,omitzero"` // its global IPv6 address and tunnel port
	Key     string         `json:"key,omitempty"`    // its static X25519 public key, base64
	Certs   []string       `json:"certs,omitempty"`  // its TXT record's cert= strings, whole (package hostcert)
	Changed time.Time      `json:"changed,omitzero"` // when any of this last changed
}

// ReachableAt describes where p is reached: its IPv4 and IPv6 endpoints.
func (p Peer) ReachableAt() string { return publish.EndpointsString(p.Public, p.Public6) }

// Config says whom to watch and how. Resolver, Zone, Key and Self are
// required.
type Config struct {
	Resolver  *discover.Resolver
	Zone      string      // members.example.com.
	Key       keyfile.Key // the user's key; its name is the user's domain
	Self      string      // this host's name (HOST.USER.ZONE.), left out of the table
	Transport string      // "tls" (default), "tcp" or "udp"
	TLS       *tls.Config
	Lease     time.Duration // asked for each LLQ
	// Server, if set, is the LLQ server's host:port (no discovery, no DNS
	// Push).
	Server string
	// Push is "auto" (the default: DNS Push where offered, else LLQ),
	// "dns-push" or "llq".
	Push string
	// PollInterval is how often to poll when LLQs are not offered
	// (default 30 s; RFC 8764 §5.2.3 asks for no more than once per 15
	// minutes of unchanged data from stub resolvers; this is one user's
	// own few names).
	PollInterval time.Duration
	// CacheFile, if set, keeps the last known table across restarts: it
	// is written on every change and read by New, so that a client
	// started while the server is down still knows the other hosts (and
	// the tunnel reaches them) until the server answers again.
	CacheFile string
	// OnSession, if set, is called each time a new LLQ session has its
	// table whole: after a start, a network change or the server's
	// return, when the host's own records should be sent again too.
	OnSession func()
	// Extra names whose TXT records are followed too (the user's
	// revocation list): OnRecords gets a name's whole RRset at each
	// session's start and after each change, before the daemon is told
	// the table changed.
	Extra     []string
	OnRecords func(name string, rrs []dns.RR)
	Logf      func(string, ...any)
}

// Status is how the watcher is doing, for `btmm-client status`.
type Status struct {
	Server string `json:"server"`
	Mode   string `json:"mode"` // "dns-push", "llq", "poll" or "connecting"
	// LLQs is the number of live subscriptions, LLQs or DNS Push ones.
	LLQs  int    `json:"llqs"`
	Error string `json:"error,omitempty"`
	// Since is when the server stopped answering (or the first error
	// since it last did); zero while it answers.
	Since time.Time `json:"since,omitzero"`
	// Cached says the table is the one kept from before (CacheFile), not
	// yet confirmed by the server.
	Cached bool `json:"cached,omitempty"`
	// Sessions counts the subscription sessions set up (the first, and
	// each reconnection).
	Sessions uint64 `json:"sessions"`
}

// Watcher keeps the peer table.
type Watcher struct {
	cfg       Config
	changed   chan struct{}
	reconnect chan struct{}

	// mu guards following.
	mu     sync.Mutex
	peers  map[string]*hostState // by host name, lowercase
	before map[string]*hostState // the table as a new session started
	status Status

	extra map[string]*extraState // Config.Extra, by name, lowercase; mu guards it too
}

// extraState is one of Config.Extra's names.
type extraState struct {
	rrs []dns.RR
	sub subscribe.Sub
}

// hostState is what is known of one other host, and the LLQs that keep
// it current.
type hostState struct {
	name  string
	srv   []dns.RR // at _autotunnel._udp.HOST
	label string
	a     []dns.RR // A, AAAA, TXT at the label
	llqs  []subscribe.Sub
	peer  Peer
}

// New returns a watcher; nothing is sent before Run.
func New(cfg Config) *Watcher {
	if cfg.Resolver == nil || cfg.Zone == "" || cfg.Key.Name == "" || cfg.Self == "" {
		panic("watch: Config needs Resolver, Zone, Key and Self")
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Transport == "" {
		cfg.Transport = "tls"
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 30 * time.Second
	}
	if cfg.Lease == 0 {
		cfg.Lease = 2 * time.Hour
	}
	if cfg.OnRecords == nil {
		cfg.OnRecords = func(string, []dns.RR) {}
	}
	cfg.Self = dns.CanonicalName(cfg.Self)
	w := &Watcher{cfg: cfg, changed: make(chan struct{}, 1), reconnect: make(chan struct{}, 1), peers: make(map[string]*hostState), status: Status{Mode: "connecting"}}
	w.loadCache()
	return w
}

// loadCache starts the table from CacheFile, if it holds one, and tells
// the daemon at once.
func (w *Watcher) loadCache() {
	if w.cfg.CacheFile == "" {
		return
	}
	b, err := os.ReadFile(w.cfg.CacheFile)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			w.cfg.Logf("watch: reading the cached peers: %v", err)
		}
		return
	}
	var peers []Peer
	if err := json.Unmarshal(b, &peers); err != nil {
		w.cfg.Logf("watch: %s is not a peer table (%v): starting without it", w.cfg.CacheFile, err)
		return
	}
	for _, p := range peers {
		host := dns.CanonicalName(p.Host)
		if host == w.cfg.Self || !dns.IsSubDomain(w.domain(), host) {
			continue
		}
		w.peers[host] = &hostState{name: host, peer: p}
	}
	if len(w.peers) > 0 {
		w.status.Cached = true
		w.cfg.Logf("watch: %d peers from %s until the server answers", len(w.peers), w.cfg.CacheFile)
		w.notify()
	}
}

// saveCache writes the table to CacheFile, whole or not at all.
func (w *Watcher) saveCache() {
	if w.cfg.CacheFile == "" {
		return
	}
	b, err := json.Marshal(w.Peers())
	if err == nil {
		tmp := w.cfg.CacheFile + ".tmp"
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, w.cfg.CacheFile)
		}
	}
	if err != nil {
		w.cfg.Logf("watch: saving the peers: %v", err)
	}
}

// Peers returns the table, sorted by host name.
func (w *Watcher) Peers() []Peer {
	w.mu.Lock()
	defer w.mu.Unlock()
	table := w.peers
	if w.before != nil {
		// A session is setting its LLQs up: until its table is whole,
		// the last whole one stands.
		table = w.before
	}
	out := make([]Peer, 0, len(table))
	for _, h := range table {
		out = append(out, h.peer)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}

// Reconnect makes the watcher set its LLQs up again at once, on a new
// connection: call it when the path to the server may have broken without
// either end noticing (this host's address changed, or its NAT rebooted
// and forgot the connection). It never blocks.
func (w *Watcher) Reconnect() {
	select {
	case w.reconnect <- struct{}{}:
	default:
	}
}

// errReconnect ends a session on request.
var errReconnect = errors.New("watch: setting up again after a network change")

// Changed is signalled (coalesced) whenever the table changes.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

// Status returns how the watcher is doing.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

func (w *Watcher) setStatus(f func(*Status)) {
	w.mu.Lock()
	f(&w.status)
	w.mu.Unlock()
}

// notify tells the daemon that the table changed, and keeps it.
func (w *Watcher) notify() {
	w.saveCache()
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

func (w *Watcher) domain() string { return dns.CanonicalName(w.cfg.Key.Name) }

func (w *Watcher) listName() string { return "_autotunnel._udp." + w.domain() }

// Run watches until ctx ends: an LLQ session, set up again after a lost
// connection or a server restart (with back-off), or polling where LLQs
// are refused or not offered.
func (w *Watcher) Run(ctx context.Context) error {
	// Capped at a few seconds, so that the LLQs are back soon after the
	// server is; jittered, so that its clients do not all come at once.
	retry := backoff.Backoff{Min: 500 * time.Millisecond, Max: 2 * time.Second}
	for ctx.Err() == nil {
		w.setStatus(func(s *Status) { s.Sessions++ })
		err := w.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errReconnect) {
			w.cfg.Logf("%v", err)
			retry.Reset()
			continue
		}
		var se *llq.SetupError
		if errors.Is(err, discover.ErrNotOffered) || errors.As(err, &se) && (se.Rcode == dns.RcodeRefused || se.Rcode == dns.RcodeNotImplemented) {
			w.cfg.Logf("watch: the server offers no LLQ here (%v): polling every %v", err, w.cfg.PollInterval)
			err = w.poll(ctx)
			if ctx.Err() != nil {
				return nil
			}
		}
		w.failed(err)
		wait := retry.Next()
		w.cfg.Logf("watch: %v; setting up again in %v", err, wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if w.Status().Mode != "connecting" {
			retry.Reset() // it polled for a while
		}
	}
	return nil
}

// failed records that the server could not be used, and since when.
func (w *Watcher) failed(err error) {
	w.setStatus(func(s *Status) {
		s.Mode, s.Error, s.LLQs = "connecting", fmt.Sprint(err), 0
		if s.Since.IsZero() {
			s.Since = time.Now()
		}
	})
}

// session holds subscriptions (DNS Push or LLQ) on the host list and each
// host's records until the connection fails or ctx ends.
func (w *Watcher) session(ctx context.Context) error {
	c, err := subscribe.Dial(ctx, subscribe.Config{
		Resolver: w.cfg.Resolver, Zone: w.cfg.Zone, Key: w.cfg.Key, Transport: w.cfg.Transport,
		TLS: w.cfg.TLS, Lease: w.cfg.Lease, Push: w.cfg.Push, Server: w.cfg.Server, Logf: w.cfg.Logf,
	})
	if err != nil {
		if errors.Is(err, discover.ErrNotOffered) {
			return err
		}
		return fmt.Errorf("watch: %w", err)
	}
	defer c.Close()
	list, hosts, err := c.Setup(ctx, w.listName(), dns.TypePTR)
	if err != nil {
		return err
	}
	if err := w.setupExtra(ctx, c); err != nil {
		return err
	}
	w.setStatus(func(s *Status) {
		s.Server, s.Mode, s.Error, s.Since = c.Server(), c.Mode(), "", time.Time{}
	})
	w.cfg.Logf("watch: watching %s by %s on %s", w.listName(), c.Mode(), c.Server())

	// Start afresh: the answers are the truth now. What was known of a
	// host before is only kept to tell whether it changed meanwhile.
	w.mu.Lock()
	w.before, w.peers = w.peers, make(map[string]*hostState)
	w.mu.Unlock()
	for _, rr := range hosts {
		if p, ok := rr.(*dns.PTR); ok {
			if err := w.addHost(ctx, c, p.Ptr); err != nil {
				return err
			}
		}
	}
	w.mu.Lock()
	w.before = nil
	w.mu.Unlock()
	w.setStatus(func(s *Status) { s.Cached = false })
	w.notify()
	if w.cfg.OnSession != nil {
		w.cfg.OnSession()
	}
	llqs := func() []subscribe.Sub {
		all := []subscribe.Sub{list}
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, e := range w.extra {
			all = append(all, e.sub)
		}
		for _, h := range w.peers {
			all = append(all, h.llqs...)
		}
		return all
	}
	n := len(llqs())
	w.setStatus(func(s *Status) { s.LLQs = n })

	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, l := range llqs() {
				cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				l.Cancel(cctx)
				cancel()
			}
			return nil
		case <-w.reconnect:
			return errReconnect
		case <-c.Done():
			return fmt.Errorf("watch: %s connection ended: %v", c.Mode(), c.Err())
		case ev, ok := <-c.Events():
			if !ok {
				return fmt.Errorf("watch: %s connection ended: %v", c.Mode(), c.Err())
			}
			if err := w.apply(ctx, c, ev); err != nil {
				return err
			}
			n := len(llqs())
			w.setStatus(func(s *Status) { s.LLQs = n })
		case <-tick.C:
			// LLQs are refreshed at 80 % of their lease (RFC 8764 §7).
			if err := c.Maintain(ctx); err != nil {
				return fmt.Errorf("watch: %w", err)
			}
		}
	}
}

// addHost starts watching a host: its SRV record, then the records at the
// SRV's target.
func (w *Watcher) addHost(ctx context.Context, c subscribe.Session, host string) error {
	host = dns.CanonicalName(host)
	if host == w.cfg.Self {
		return nil
	}
	w.mu.Lock()
	_, known := w.peers[host]
	w.mu.Unlock()
	if known {
		return nil
	}
	h := &hostState{name: host, peer: Peer{Host: host}}
	w.mu.Lock()
	if old, ok := w.before[host]; ok {
		h.peer = old.peer
	}
	w.mu.Unlock()
	l, srv, err := c.Setup(ctx, "_autotunnel._udp."+host, dns.TypeSRV)
	if err != nil {
		return fmt.Errorf("watch: %s: %w", host, err)
	}
	h.llqs, h.srv = append(h.llqs, l), srv
	w.mu.Lock()
	w.peers[host] = h
	w.mu.Unlock()
	return w.watchLabel(ctx, c, h)
}

// watchLabel (re)starts the LLQs at the host's SRV target.
func (w *Watcher) watchLabel(ctx context.Context, c subscribe.Session, h *hostState) error {
	w.mu.Lock()
	label := ""
	for _, rr := range h.srv {
		if s, ok := rr.(*dns.SRV); ok {
			label = dns.CanonicalName(s.Target)
		}
	}
	if label == h.label {
		w.update(h)
		w.mu.Unlock()
		return nil
	}
	stale := h.llqs[1:]
	h.llqs, h.label, h.a = h.llqs[:1], label, nil
	w.mu.Unlock()
	for _, l := range stale {
		l.Cancel(ctx)
	}
	if label == "" {
		w.mu.Lock()
		w.update(h)
		w.mu.Unlock()
		return nil
	}
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT} {
		l, rrs, err := c.Setup(ctx, label, t)
		if err != nil {
			return fmt.Errorf("watch: %s %s: %w", label, dns.TypeToString[t], err)
		}
		w.mu.Lock()
		h.llqs = append(h.llqs, l)
		h.a = append(h.a, rrs...)
		w.mu.Unlock()
	}
	w.mu.Lock()
	w.update(h)
	w.mu.Unlock()
	return nil
}

// apply takes one event into the table.
func (w *Watcher) apply(ctx context.Context, c subscribe.Session, ev subscribe.Event) error {
	name := dns.CanonicalName(ev.Name)
	if name == w.listName() {
		for _, rr := range ev.Removed {
			if p, ok := rr.(*dns.PTR); ok {
				w.removeHost(ctx, dns.CanonicalName(p.Ptr))
			}
		}
		for _, rr := range ev.Added {
			if p, ok := rr.(*dns.PTR); ok {
				if err := w.addHost(ctx, c, p.Ptr); err != nil {
					return err
				}
			}
		}
		w.notify()
		return nil
	}
	w.mu.Lock()
	if e := w.extra[name]; e != nil && ev.Qtype == dns.TypeTXT {
		e.rrs = applyRRs(e.rrs, ev)
		rrs := e.rrs
		w.mu.Unlock()
		w.cfg.OnRecords(name, rrs)
		w.notify()
		return nil
	}
	var h *hostState
	for _, s := range w.peers {
		if name == "_autotunnel._udp."+s.name || name == s.label {
			h = s
			break
		}
	}
	if h == nil {
		w.mu.Unlock()
		return nil
	}
	if ev.Qtype == dns.TypeSRV {
		h.srv = applyRRs(h.srv, ev)
		w.mu.Unlock()
		err := w.watchLabel(ctx, c, h)
		w.notify()
		return err
	}
	h.a = applyRRs(h.a, ev)
	w.update(h)
	w.mu.Unlock()
	w.notify()
	return nil
}

// setupExtra subscribes to the TXT records at each of Config.Extra's
// names, and hands them to OnRecords.
func (w *Watcher) setupExtra(ctx context.Context, c subscribe.Session) error {
	extra := make(map[string]*extraState)
	for _, name := range w.cfg.Extra {
		name = dns.CanonicalName(name)
		sub, rrs, err := c.Setup(ctx, name, dns.TypeTXT)
		if err != nil {
			return fmt.Errorf("watch: %s TXT: %w", name, err)
		}
		extra[name] = &extraState{rrs: rrs, sub: sub}
		w.cfg.OnRecords(name, rrs)
	}
	w.mu.Lock()
	w.extra = extra
	w.mu.Unlock()
	return nil
}

func (w *Watcher) removeHost(ctx context.Context, host string) {
	w.mu.Lock()
	h := w.peers[host]
	delete(w.peers, host)
	w.mu.Unlock()
	if h != nil {
		for _, l := range h.llqs {
			l.Cancel(ctx)
		}
		w.cfg.Logf("watch: %s left", host)
	}
}

// applyRRs removes the event's removed records from rrs and adds its
// added ones.
func applyRRs(rrs []dns.RR, ev subscribe.Event) []dns.RR { return subscribe.Apply(rrs, ev) }

// update recomputes h.peer from its records; w.mu must be held.
func (w *Watcher) update(h *hostState) {
	p := Peer{Host: h.name, Label: h.label, Changed: h.peer.Changed}
	var port uint16
	for _, rr := range h.srv {
		if s, ok := rr.(*dns.SRV); ok {
			port = s.Port
		}
	}
	p.Public, p.Public6, p.ULA = publish.Endpoints(port, h.a)
	for _, rr := range h.a {
		if t, ok := rr.(*dns.TXT); ok {
			for _, s := range t.Txt {
				if k, ok := strings.CutPrefix(s, "pk="); ok {
					p.Key = k
				}
				if strings.HasPrefix(s, "cert=") {
					p.Certs = append(p.Certs, s)
				}
			}
		}
	}
	if p.ULA != h.peer.ULA || p.Public != h.peer.Public || p.Public6 != h.peer.Public6 || p.Key != h.peer.Key || !slices.Equal(p.Certs, h.peer.Certs) || p.Label != h.peer.Label {
		p.Changed = time.Now()
		w.cfg.Logf("watch: peer %s at %v (tunnel address %v)", p.Host, p.ReachableAt(), p.ULA)
	}
	h.peer = p
}
