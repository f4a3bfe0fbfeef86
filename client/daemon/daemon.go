// Package daemon is `btmm-client run`: it ties the host's identity, its
// NAT mapping, the publication of its records, the watch on the user's
// other hosts and the network monitor together, and answers `status` on
// a local socket.
//
// The order of work after any change (RFC 6281 §4, §5.2): the network
// changes (netmon) → the mapping is checked again (portmap) → the records
// are published again at once (publish) → the other hosts hear of it by
// their LLQs. Each stage runs in its own goroutine and hands the next one
// only its latest state, so that no stage ever waits for another.
package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/config"
	"github.com/openbtmm/btmm/client/discover"
	"github.com/openbtmm/btmm/client/dnssd"
	"github.com/openbtmm/btmm/client/hostcert"
	"github.com/openbtmm/btmm/client/identity"
	"github.com/openbtmm/btmm/client/netmon"
	"github.com/openbtmm/btmm/client/portmap"
	"github.com/openbtmm/btmm/client/publish"
	"github.com/openbtmm/btmm/client/tunnel"
	"github.com/openbtmm/btmm/client/tunnel/esp"
	"github.com/openbtmm/btmm/client/tunnel/handshake"
	"github.com/openbtmm/btmm/client/tunnel/tun"
	"github.com/openbtmm/btmm/client/userspace"
	"github.com/openbtmm/btmm/client/watch"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// recordTTL is the TTL of the published records: hosts move, and caches
// other than LLQ clients should not keep old addresses long.
const recordTTL = 60

// Daemon is one running btmm-client.
type Daemon struct {
	cfg     *config.Config
	logf    func(string, ...any)
	id      identity.Identity
	keys    identity.KeyPair
	pm      *portmap.Client
	pin     *portmap.Pinhole
	pub     *publish.Publisher
	watch   *watch.Watcher
	trust   *hostcert.Trust // nil on a host not enrolled (trust.go)
	certLog errLog          // the last error of certificates()
	started time.Time

	// The tunnel; nil when the TUN device could not be made (not root).
	// In userspace mode us is the stack that tun wraps.
	tun       innerDevice
	us        *userspace.Device
	tunnel    *tunnel.Tunnel
	tunnelErr error
	keyLog    *keyLog                    // the ESP key log (esp_keylog); nil when off
	tpeers    map[netip.Addr]tunnel.Peer // what reconcile last gave the tunnel; Run's goroutine only

	mu       sync.Mutex // guards mapping and services
	mapping  portmap.Mapping
	services []dnssd.Service // published with the host's records
	obs      *observer       // the server-observed endpoint (observe.go)
	key      keyfile.Key
	res      *discover.Resolver
}

// servicesScan is how often services_auto looks at the listening sockets.
const servicesScan = 30 * time.Second

// New prepares a daemon from a validated configuration: it reads the
// user's key, makes the host's identity and loads (or makes) its X25519
// key pair. Nothing is sent before Run.
func New(cfg *config.Config, logf func(string, ...any)) (*Daemon, error) {
	key, err := cfg.LoadKey()
	if err != nil {
		return nil, err
	}
	iface, mac, err := identity.Primary()
	if err != nil {
		return nil, fmt.Errorf("finding the primary interface: %w", err)
	}
	id, err := identity.LoadOrNew(cfg.IdentityPath(), iface, mac, rand.Reader)
	if err != nil {
		return nil, err
	}
	keys, err := identity.LoadOrCreateKey(cfg.KeyPath())
	if err != nil {
		return nil, err
	}
	tlsConf, err := transportTLS(cfg)
	if err != nil {
		return nil, err
	}
	res := &discover.Resolver{Server: cfg.Server}
	trust, err := loadTrust(cfg, logf)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, logf: logf, id: id, keys: keys, obs: newObserver(), key: key, res: res, trust: trust}
	// RFC 6886 §3.7 spreads the clients of a rebooted gateway over 5 s; a
	// home gateway has a handful, and 2 s keeps a host reachable again
	// within 5 s of its NAT's reboot.
	d.pm = portmap.New(portmap.Config{InternalPort: uint16(cfg.TunnelPort), Logf: logf, StateLossDelay: 2 * time.Second})
	d.pin = portmap.NewPinhole(portmap.PinholeConfig{InternalPort: uint16(cfg.TunnelPort), Address: netmon.GlobalIPv6, Logf: logf})
	d.pub = publish.New(publish.Config{Resolver: res, Zone: cfg.Zone, Key: key, Transport: cfg.Transport, TLS: tlsConf, Lease: cfg.Lease, Logf: logf})
	wc := watch.Config{Resolver: res, Zone: cfg.Zone, Key: key, Self: cfg.HostName(), Transport: cfg.Transport, TLS: tlsConf, Lease: cfg.LLQLease, Push: cfg.Push, CacheFile: cfg.PeersPath(), OnSession: d.pub.Republish, Logf: logf}
	if trust != nil {
		wc.Extra, wc.OnRecords = []string{hostcert.RevocationName(cfg.Domain())}, d.trustRecords
	}
	d.watch = watch.New(wc)
	psk, err := d.tunnelPSK()
	if err != nil {
		return nil, err
	}
	if cfg.ESPKeyLog != "" {
		k, warn, err := openKeyLog(cfg.ESPKeyLog)
		if err != nil {
			return nil, err
		}
		d.keyLog = k
		logf("ESP KEY LOG ON: writing SA keys to %s (esp_keylog / --esp-keylog): anyone who can read that file can decrypt this host's tunnel traffic; for debugging only", cfg.ESPKeyLog)
		if warn != "" {
			logf("ESP KEY LOG: %s", warn)
		}
	}
	if err := d.newTunnel(psk); err != nil {
		d.tunnelErr = err
		logf("TUNNEL DISABLED: %v (creating a TUN device needs root or CAP_NET_ADMIN); running without the tunnel: the other hosts are watched and this one published, but no traffic flows", err)
	}
	return d, nil
}

// transportTLS is the TLS configuration for the server when the transport
// is "tls", and nil for "tcp" and "udp", which carry no TLS.
func transportTLS(cfg *config.Config) (*tls.Config, error) {
	if cfg.Transport != "tls" {
		return nil, nil
	}
	return cfg.TLSConfig()
}

// innerDevice is the tunnel's inner side as the daemon uses it: a TUN
// device, which routes each peer's address into it, or the userspace
// stack, which needs no routes.
type innerDevice interface {
	tunnel.TUN
	Name() string
	AddPeer(netip.Addr) error
	RemovePeer(netip.Addr) error
}

// userspaceDevice is the userspace stack as an innerDevice.
type userspaceDevice struct{ *userspace.Device }

func (userspaceDevice) Name() string                { return "a userspace TCP/IP stack (no TUN device)" }
func (userspaceDevice) AddPeer(netip.Addr) error    { return nil }
func (userspaceDevice) RemovePeer(netip.Addr) error { return nil }

// newTunnel makes the tunnel's inner side (the TUN device, or the
// userspace stack), binds the mapped tunnel port and makes the tunnel on
// them.
func (d *Daemon) newTunnel(psk [32]byte) error {
	suites, err := handshake.ParseSuites(d.cfg.ESPSuites) // checked by Validate
	if err != nil {
		return err
	}
	var dev innerDevice
	if d.cfg.TunnelMode == "userspace" {
		us, err := userspace.NewDevice(d.id.ULA, 0, d.logf)
		if err != nil {
			return err
		}
		d.us, dev = us, userspaceDevice{us}
	} else {
		t, err := tun.Create("", d.id.ULA, 0)
		if err != nil {
			return err
		}
		dev = t
	}
	// The tunnel sends from the port NAT-PMP maps, so that the peers'
	// packets come in through the mapping and the NAT keeps the source
	// port the peers know.
	tc := tunnel.Config{
		Suites: suites,
		TUN:    dev,
		Port:   uint16(d.cfg.TunnelPort),
		Static: handshake.KeyPair{Private: d.keys.Private, Public: d.keys.Public},
		PSK:    psk,
		ULA:    d.id.ULA,
		Allow:  d.allowPeer,
		Logf:   d.logf,
	}
	if d.keyLog != nil { // not a typed nil in the interface
		tc.KeyLog = d.keyLog
	}
	t, err := tunnel.New(tc)
	if err != nil {
		dev.Close()
		return err
	}
	d.tun, d.tunnel = dev, t
	d.tpeers = make(map[netip.Addr]tunnel.Peer)
	d.logf("tunnel: %s on %s, UDP port %d", d.id.ULA, dev.Name(), d.cfg.TunnelPort)
	return nil
}

// allowPeer admits a handshake only from a key the watcher currently
// lists for one of the user's other hosts.
func (d *Daemon) allowPeer(k [32]byte) bool {
	for _, p := range d.peers() {
		if pk, err := handshake.ParsePublicKey(p.Key); err == nil && pk == k {
			return true
		}
	}
	return false
}

// reconcile gives the tunnel the watcher's current peers: each with a
// tunnel address, a public endpoint (IPv4 or IPv6 or both) and a key is
// added (or updated), those that left are removed.
func (d *Daemon) reconcile() {
	if d.tunnel == nil {
		return
	}
	want := make(map[netip.Addr]tunnel.Peer)
	for _, p := range d.peers() {
		eps := peerEndpoints(p)
		if !p.ULA.IsValid() || len(eps) == 0 || p.Key == "" {
			continue
		}
		k, err := handshake.ParsePublicKey(p.Key)
		if err != nil {
			d.logf("tunnel: %s publishes a bad key: %v", p.Host, err)
			continue
		}
		if p.ULA == d.id.ULA {
			continue
		}
		want[p.ULA] = tunnel.Peer{ULA: p.ULA, Endpoints: eps, Static: k}
	}
	for ula := range d.tpeers {
		if _, ok := want[ula]; !ok {
			d.tunnel.RemovePeer(ula)
			if err := d.tun.RemovePeer(ula); err != nil {
				d.logf("tunnel: removing the route to %s: %v", ula, err)
			}
			delete(d.tpeers, ula)
			d.logf("tunnel: peer %s gone", ula)
		}
	}
	for ula, p := range want {
		old, had := d.tpeers[ula]
		if had && old.Static == p.Static && slices.Equal(old.Endpoints, p.Endpoints) {
			continue
		}
		if !had {
			if err := d.tun.AddPeer(ula); err != nil {
				d.logf("tunnel: routing %s: %v", ula, err)
				continue
			}
		}
		d.tunnel.SetPeer(p)
		d.tpeers[ula] = p
		d.logf("tunnel: peer %s at %v", ula, p.Endpoints)
	}
}

// peerEndpoints is where a peer is reached: its IPv6 endpoint first, as
// RFC 6724 prefers IPv6 (no NAT on the way, so no mapping to lose), then
// its IPv4 endpoint. The tunnel sends every handshake to both and keeps
// the one that answers first.
func peerEndpoints(p watch.Peer) []netip.AddrPort {
	var eps []netip.AddrPort
	for _, ap := range []netip.AddrPort{p.Public6, p.Public} {
		if ap.IsValid() {
			eps = append(eps, ap)
		}
	}
	return eps
}

// Run runs until ctx ends, then removes the host's records and deletes
// its mapping (a clean exit) before it returns.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = time.Now()
	if d.keyLog != nil {
		// Run returns after the tunnel's goroutines, its only writers.
		defer d.keyLog.Close()
	}
	d.logf("btmm-client: %s, tunnel address %s (%s on %s), key %s", d.cfg.HostName(), d.id.ULA, d.id.Label, d.id.Interface, d.keys.PublicBase64())

	sock, err := listenStatus(d.cfg.StatusSocket)
	if err != nil {
		if d.tunnel != nil {
			d.tunnel.Close()
		}
		return err
	}
	defer sock.Close()

	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				d.logf("%s: %v", name, err)
			}
		}()
	}
	run("status", func(ctx context.Context) error { return serveStatus(ctx, sock, d.Status) })
	if d.cfg.Metrics != "" {
		ln, err := net.Listen("tcp", d.cfg.Metrics)
		if err != nil {
			if d.tunnel != nil {
				d.tunnel.Close()
			}
			return fmt.Errorf("metrics: %w", err)
		}
		d.logf("metrics at http://%s/metrics", ln.Addr())
		run("metrics", func(ctx context.Context) error { return serveMetrics(ctx, ln, d.Status) })
	}
	if d.us != nil {
		if err := d.serveUserspace(ctx, run); err != nil {
			d.tunnel.Close()
			return err
		}
	}
	d.services = d.findServices()
	if len(d.services) > 0 {
		d.logf("services: %s", describeServices(d.services))
	}
	run("portmap", d.pm.Run)
	run("pinhole", d.pin.Run)
	run("publish", d.pub.Run)
	var scan <-chan time.Time
	if d.cfg.ServicesAuto {
		if _, err := dnssd.Listening(); err != nil {
			d.logf("%v", err)
		} else {
			t := time.NewTicker(servicesScan)
			defer t.Stop()
			scan = t.C
		}
	}
	run("watch", d.watch.Run)
	if d.tunnel != nil {
		run("tunnel", d.tunnel.Run)
	}
	run("observe", func(ctx context.Context) error { return d.observe(ctx, d.key, d.res) })

	// The tunnel's own device changes whenever a peer's route is added:
	// that is not a move of this host.
	var own []string
	if d.tun != nil && d.us == nil {
		own = append(own, d.tun.Name())
	}
	changes, err := netmon.Watch(ctx, 0, own...)
	if err != nil {
		d.logf("netmon: %v (network changes will be noticed at the next renewal only)", err)
	}
	trustTick := time.NewTicker(trustInterval)
	defer trustTick.Stop()
	for {
		select {
		case <-trustTick.C:
			d.trustTick()
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-changes:
			d.logf("network changed: checking the mapping again, and the LLQs")
			d.pm.Refresh()
			d.pin.Refresh()
			// The global IPv6 address needs no mapping: republish
			// now if it changed.
			d.publishIPv6Change()
			// A connection from the old address is dead, though neither
			// end may know it yet.
			d.watch.Reconnect()
			d.announce()
		case <-d.watch.Changed():
			d.reconcile()
		case <-scan:
			if s := d.findServices(); !dnssd.Equal(s, d.servicesNow()) {
				d.mu.Lock()
				d.services = s
				d.mu.Unlock()
				d.logf("services: now %s", describeServices(s))
				d.publishHost()
			}
		case m, ok := <-d.pm.Changes():
			if !ok {
				// Run ended (ctx done): wait for the rest.
				wg.Wait()
				return nil
			}
			d.mapped(m)
		}
	}
}

// publishIPv6Change publishes the host again if its global IPv6 address
// is not the one published.
func (d *Daemon) publishIPv6Change() {
	a, _ := netmon.GlobalIPv6()
	if h, ok := d.pub.Host(); ok && h.Public6.Addr() != a && (a.IsValid() || h.Public6.IsValid()) {
		d.logf("global IPv6 address now %v", a)
		d.publishHost()
	}
}

// publishIPv6Meanwhile publishes the host at its global IPv6 address
// alone, if nothing is published yet: while the server is asked for the
// IPv4 endpoint. Once something is published it stays until the answer
// replaces it.
func (d *Daemon) publishIPv6Meanwhile() {
	if _, ok := d.pub.Host(); !ok {
		d.publishHost()
	}
}

// announce makes the peers follow this host to its new address at once
// (tunnel.Announce), ahead of the republished records.
func (d *Daemon) announce() {
	if d.tunnel != nil {
		d.tunnel.Announce()
	}
}

// mapped publishes the host's records for a new mapping.
func (d *Daemon) mapped(m portmap.Mapping) {
	d.mu.Lock()
	prev := d.mapping
	d.mapping = m
	d.mu.Unlock()
	if prev.Valid() && (m.Reboot || m.External.Addr() != prev.External.Addr()) {
		// The NAT changed its address or rebooted: it forgot the
		// connections through it, the LLQ connection among them.
		d.watch.Reconnect()
		d.announce()
	}
	public := m.External
	switch {
	case m.Public && unusable(m):
		d.logf("no mapping protocol, and this host's address %s is private (a routed private network): asking the server where it sees this host", public.Addr())
		d.obs.restart()
		d.publishIPv6Meanwhile()
		return
	case m.Public:
		d.logf("no NAT here: publishing the host's own address %s", public)
	case m.Valid():
		if m.Protocol == portmap.ProtoUPnP {
			d.logf("mapped %s → port %d (%v, lease %v)", public, m.Internal, m.Protocol, m.Lifetime)
		} else {
			d.logf("mapped %s → port %d (%v, epoch %d, lifetime %v)", public, m.Internal, m.Protocol, m.Epoch, m.Lifetime)
		}
	default:
		d.logf("no usable mapping (%v): asking the server where it sees this host", m.Err)
		d.obs.restart()
		d.publishIPv6Meanwhile()
		return
	}
	if unusable(m) {
		d.logf("the gateway's external address %s is itself private (a NAT behind a NAT): asking the server where it sees this host", public.Addr())
		d.obs.restart()
		d.publishIPv6Meanwhile()
		return
	}
	d.publishHost()
}

// endpoint is where the host is published as reachable: the mapping's
// external endpoint (or its own address, with no NAT), else the endpoint
// the server sees (observe.go); invalid when there is neither yet.
func (d *Daemon) endpoint() netip.AddrPort {
	d.mu.Lock()
	m := d.mapping
	d.mu.Unlock()
	if (m.Public || m.Valid()) && !unusable(m) {
		return m.External
	}
	return d.obs.get().Endpoint
}

// publishHost hands the publisher the host's records at its endpoints,
// with the services: the IPv4 endpoint (endpoint) and the host's global
// IPv6 address at the tunnel port, if it has one; nothing with neither.
func (d *Daemon) publishHost() {
	public := d.endpoint()
	if public.IsValid() && !public.Addr().Is4() {
		d.logf("the public address %s is not IPv4: not publishing it", public)
		public = netip.AddrPort{}
	}
	var public6 netip.AddrPort
	if a, ok := netmon.GlobalIPv6(); ok && d.tunnel != nil {
		public6 = netip.AddrPortFrom(a, d.tunnel.Port())
	}
	if !public.IsValid() && !public6.IsValid() {
		return
	}
	certs, extra := d.certificates()
	d.pub.Set(publish.Host{
		Zone: d.cfg.Zone, User: d.cfg.User, Name: d.cfg.Host, Label: d.id.Label,
		ULA: d.id.ULA, Public: public, Public6: public6, Key: d.keys.PublicBase64(), TTL: recordTTL,
		Services: d.servicesNow(), Certs: certs, Extra: extra,
	})
}

func (d *Daemon) servicesNow() []dnssd.Service {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.services
}

// findServices returns the configured services and, with services_auto,
// the well-known ones this host listens on through its tunnel address.
func (d *Daemon) findServices() []dnssd.Service {
	conf := d.cfg.ServiceList()
	if !d.cfg.ServicesAuto {
		return conf
	}
	ls, err := dnssd.Listening()
	if err != nil {
		return conf
	}
	return dnssd.Merge(conf, dnssd.Detect(ls, d.id.ULA))
}

// describeServices is "_ssh._tcp:22, _http._tcp:8080" or "none".
func describeServices(s []dnssd.Service) string {
	if len(s) == 0 {
		return "none"
	}
	var out []string
	for _, x := range s {
		out = append(out, fmt.Sprintf("%s:%d", x.Type, x.Port))
	}
	return strings.Join(out, ", ")
}

// Status is what `btmm-client status` shows.
type Status struct {
	Host      string        `json:"host"`
	ULA       string        `json:"ula"`
	Label     string        `json:"label"`
	Interface string        `json:"interface"`
	PublicKey string        `json:"public_key"`
	Started   time.Time     `json:"started"`
	Mapping   MappingStatus `json:"mapping"`
	// Public6 is the IPv6 endpoint published beside the mapping's IPv4
	// one: the host's global IPv6 address at the tunnel port; Pinhole,
	// the PCP pinhole for it on the IPv6 gateway.
	Public6 string         `json:"public6,omitempty"`
	Pinhole PinholeStatus  `json:"pinhole"`
	Publish publish.Status `json:"publish"`
	Watch   watch.Status   `json:"watch"`
	Peers   []watch.Peer   `json:"peers"` // those the trust accepts
	// Trust is how peers are trusted, and the hosts refused (trust.go).
	Trust TrustStatus `json:"trust"`
	// Tunnels is one entry per peer the tunnel knows; TunnelError says
	// why there is no tunnel at all.
	Tunnels     []TunnelStatus `json:"tunnels"`
	TunnelDrops TunnelCounters `json:"tunnel_drops"`
	TunnelError string         `json:"tunnel_error,omitempty"`
	// TunnelMode is "tun" or "userspace" (tunnel_mode), "" without a
	// tunnel; in userspace mode the proxies and forwarded ports follow.
	TunnelMode string   `json:"tunnel_mode,omitempty"`
	SOCKSProxy string   `json:"socks_proxy,omitempty"`
	HTTPProxy  string   `json:"http_proxy,omitempty"`
	Forwarded  []uint16 `json:"forwarded,omitempty"`
}

// TunnelStatus is the tunnel to one peer as status shows it.
type TunnelStatus struct {
	ULA              netip.Addr     `json:"ula"`
	Endpoint         netip.AddrPort `json:"endpoint,omitzero"`
	HasSA            bool           `json:"has_sa"`
	SAAge            time.Duration  `json:"sa_age,omitempty"`
	Suite            string         `json:"suite,omitempty"`
	LastHandshake    time.Time      `json:"last_handshake,omitzero"`
	HandshakePending bool           `json:"handshake_pending,omitempty"`
	TxBytes          uint64         `json:"tx_bytes"`
	TxPackets        uint64         `json:"tx_packets"`
	RxBytes          uint64         `json:"rx_bytes"`
	RxPackets        uint64         `json:"rx_packets"`
	// Drops: inbound packets of this peer's SAs refused, by reason.
	Drops         TunnelDrops `json:"drops"`
	StagedDropped uint64      `json:"staged_dropped,omitempty"`
	Handshakes    uint64      `json:"handshakes"`
	HandshakeFail uint64      `json:"handshake_failures,omitempty"`
	HandshakeTO   uint64      `json:"handshake_timeouts,omitempty"`
	SendErrors    uint64      `json:"send_errors,omitempty"`
	Roams         uint64      `json:"roams,omitempty"`
}

// TunnelDrops are a peer's refused inbound packets by reason.
type TunnelDrops struct {
	Replay    uint64 `json:"replay"`     // sequence number seen already or too old
	BadICV    uint64 `json:"bad_icv"`    // integrity check failed: forged, corrupted, wrong key
	Malformed uint64 `json:"malformed"`  // too short, bad padding, unexpected next header
	BadSource uint64 `json:"bad_source"` // authentic, but the inner source is not the peer's ULA
}

// Total is the sum of all reasons.
func (d TunnelDrops) Total() uint64 { return d.Replay + d.BadICV + d.Malformed + d.BadSource }

// TunnelCounters are the tunnel's drops that belong to no peer.
type TunnelCounters struct {
	UnknownSPI   uint64 `json:"unknown_spi"`   // ESP for an SPI with no SA here
	UnknownDest  uint64 `json:"unknown_dest"`  // outbound packets to no peer's tunnel address
	InvalidUDP   uint64 `json:"invalid_udp"`   // datagrams that are neither ESP, handshake nor keepalive
	BadHandshake uint64 `json:"bad_handshake"` // handshake messages refused (unknown key, another user, garbage)
	// Under a flood of initiations: cookie replies sent instead of
	// handshakes, initiations over a source's rate, and handshake
	// messages dropped while the handshake worker was behind.
	CookieReplies      uint64 `json:"cookie_replies,omitempty"`
	RateLimited        uint64 `json:"rate_limited,omitempty"`
	HandshakeQueueFull uint64 `json:"handshake_queue_full,omitempty"`
}

func tunnelStatus(ps []tunnel.PeerStatus) []TunnelStatus {
	out := make([]TunnelStatus, 0, len(ps))
	for _, p := range ps {
		var suite string
		if p.HasSA {
			// The names esp_suites takes.
			suite = handshake.Suite(p.Suite).String()
		}
		ts := TunnelStatus{
			Suite: suite,
			ULA:   p.ULA, Endpoint: p.Endpoint, HasSA: p.HasSA, SAAge: p.SAAge, LastHandshake: p.LastHandshake,
			HandshakePending: p.HandshakePending, TxBytes: p.TxBytes, TxPackets: p.TxPackets,
			RxBytes: p.RxBytes, RxPackets: p.RxPackets, StagedDropped: p.StagedDropped,
			Handshakes: p.Handshakes, HandshakeFail: p.HandshakeFailures, HandshakeTO: p.HandshakeTimeouts, SendErrors: p.SendErrors,
			Roams: p.Roams,
			Drops: TunnelDrops{
				Replay:    p.Drops.Get(esp.ErrReplay),
				BadICV:    p.Drops.Get(esp.ErrAuth),
				Malformed: p.Drops.Get(esp.ErrMalformed) + p.Drops.Get(esp.ErrPadding) + p.Drops.Get(esp.ErrNextHeader) + p.Drops.Get(esp.ErrSPI),
				BadSource: p.BadSource,
			},
		}
		out = append(out, ts)
	}
	slices.SortFunc(out, func(a, b TunnelStatus) int { return a.ULA.Compare(b.ULA) })
	return out
}

// MappingStatus is the NAT mapping as status shows it.
type MappingStatus struct {
	External string `json:"external,omitempty"`
	Public   bool   `json:"public"` // no NAT
	// Protocol is the protocol that holds the mapping: "pcp", "natpmp"
	// or "upnp" (portmap.Protocol's Key); empty when there is none.
	Protocol  string        `json:"protocol,omitempty"`
	Lifetime  time.Duration `json:"lifetime,omitempty"` // as granted; 0 for a permanent UPnP mapping
	Gateway   string        `json:"gateway,omitempty"`
	Epoch     uint32        `json:"epoch,omitempty"`
	GoodUntil time.Time     `json:"good_until,omitzero"`
	Error     string        `json:"error,omitempty"`
	// Observed is the endpoint the server sees, published when no
	// mapping protocol gives a usable mapping; ObservedMapping is
	// "independent" or "dependent" (on the destination: no direct path)
	// or "unknown", and Reach says in words what that means.
	// Endpoint is where the host is published: the mapping's external
	// endpoint, the host's own with no NAT, or Observed.
	Endpoint string `json:"endpoint,omitempty"`
	// Granted counts the mappings the gateway granted (the first,
	// renewals, re-creations), Reboots the times it had lost them.
	Granted         uint64 `json:"granted"`
	Reboots         uint64 `json:"reboots"`
	Observed        string `json:"observed,omitempty"`
	ObservedMapping string `json:"observed_mapping,omitempty"`
	ObservedError   string `json:"observed_error,omitempty"`
	Reach           string `json:"reach,omitempty"`
}

// PinholeStatus is the IPv6 pinhole's part of Status.
type PinholeStatus struct {
	Open      bool          `json:"open"`
	Gateway   string        `json:"gateway,omitempty"`
	External  string        `json:"external,omitempty"`
	Lifetime  time.Duration `json:"lifetime,omitempty"`
	GoodUntil time.Time     `json:"good_until,omitzero"`
	Error     string        `json:"error,omitempty"`
}

func pinholeStatus(p portmap.PinholeState) PinholeStatus {
	st := PinholeStatus{Open: p.Open, Lifetime: p.Lifetime, GoodUntil: p.GoodUntil}
	if p.Gateway.IsValid() {
		st.Gateway = p.Gateway.String()
	}
	if p.External.IsValid() {
		st.External = p.External.String()
	}
	if p.Err != nil {
		st.Error = p.Err.Error()
	}
	return st
}

// Status returns the daemon's state.
func (d *Daemon) Status() Status {
	d.mu.Lock()
	m := d.mapping
	d.mu.Unlock()
	ms := MappingStatus{Public: m.Public, Protocol: m.Protocol.Key(), Lifetime: m.Lifetime, Epoch: m.Epoch, GoodUntil: m.GoodUntil}
	if m.External.IsValid() {
		ms.External = m.External.String()
	}
	if m.Gateway.IsValid() {
		ms.Gateway = m.Gateway.String()
	}
	if m.Err != nil {
		ms.Error = m.Err.Error()
	}
	if unusable(m) {
		d.observedStatus(&ms)
	}
	if ep := d.endpoint(); ep.IsValid() {
		ms.Endpoint = ep.String()
	}
	ms.Granted, ms.Reboots = d.pm.Counts()
	st := Status{
		Host: d.cfg.HostName(), ULA: d.id.ULA.String(), Label: d.id.Label, Interface: d.id.Interface,
		PublicKey: d.keys.PublicBase64(), Started: d.started, Mapping: ms,
		Publish: d.pub.Status(), Watch: d.watch.Status(), Peers: d.peers(), Trust: d.trustStatus(),
		Tunnels: []TunnelStatus{},
	}
	if h, ok := d.pub.Host(); ok && h.Public6.IsValid() {
		st.Public6 = h.Public6.String()
	}
	st.Pinhole = pinholeStatus(d.pin.State())
	if d.tunnel != nil {
		st.TunnelMode = d.cfg.TunnelMode
		if d.us != nil {
			st.SOCKSProxy, st.HTTPProxy, st.Forwarded = d.cfg.SOCKSProxy, d.cfg.HTTPProxy, d.cfg.ForwardPorts()
		}
		st.Tunnels = tunnelStatus(d.tunnel.Status())
		c := d.tunnel.Counters()
		st.TunnelDrops = TunnelCounters{UnknownSPI: c.UnknownSPI, UnknownDest: c.UnknownDest, InvalidUDP: c.InvalidUDP, BadHandshake: c.BadHandshake,
			CookieReplies: c.CookieReplies, RateLimited: c.RateLimited, HandshakeQueueFull: c.HandshakeQueueFull}
	} else if d.tunnelErr != nil {
		st.TunnelError = d.tunnelErr.Error()
	}
	return st
}

// serveUserspace starts, in userspace mode, the proxies into the tunnel
// and the forwarded ports; they end with ctx. A proxy address that cannot
// be listened on stops the start: the user asked for it.
func (d *Daemon) serveUserspace(ctx context.Context, run func(string, func(context.Context) error)) error {
	proxy := &userspace.Proxy{Net: d.us.Net(), Resolve: d.resolveHost, Peer: d.isPeer, Logf: d.logf}
	for _, p := range []struct {
		name, addr string
		serve      func(context.Context, net.Listener) error
	}{{"SOCKS5 proxy", d.cfg.SOCKSProxy, proxy.ServeSOCKS5}, {"HTTP proxy", d.cfg.HTTPProxy, proxy.ServeHTTPProxy}} {
		if p.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("userspace mode: the %s: %w", p.name, err)
		}
		d.logf("userspace mode: %s into the tunnel on %s", p.name, ln.Addr())
		run(p.name, func(ctx context.Context) error { return p.serve(ctx, ln) })
	}
	for _, port := range d.cfg.ForwardPorts() {
		to := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
		f, err := d.us.Forward(port, to)
		if err != nil {
			return fmt.Errorf("userspace mode: forwarding port %d: %w", port, err)
		}
		d.logf("userspace mode: %s forwarded to %s", f.Addr(), to)
		go func() { <-ctx.Done(); f.Close() }()
	}
	return nil
}

// resolveHost gives the proxies the tunnel address of one of the user's
// hosts, by its full name (desktop.alice.members.example.com) or its first
// label alone (desktop); this host's own name gives its own address.
func (d *Daemon) resolveHost(_ context.Context, host string) (netip.Addr, error) {
	name := dns.CanonicalName(host)
	if !strings.Contains(strings.TrimSuffix(name, "."), ".") {
		name = dns.CanonicalName(strings.TrimSuffix(name, ".") + "." + d.cfg.Domain())
	}
	if name == dns.CanonicalName(d.cfg.HostName()) {
		return d.id.ULA, nil
	}
	for _, p := range d.peers() {
		if p.Host == name && p.ULA.IsValid() {
			return p.ULA, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%s is none of the user's hosts", host)
}

// isPeer reports whether a is the tunnel address of one of the user's
// other hosts.
func (d *Daemon) isPeer(a netip.Addr) bool {
	for _, p := range d.peers() {
		if p.ULA == a {
			return true
		}
	}
	return false
}
