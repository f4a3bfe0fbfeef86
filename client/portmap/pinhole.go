package portmap

import (
	"context"
	"errors"
	"log"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/openbtmm/btmm/client/route"
)

// ErrNoGateway6 says the kernel has no IPv6 default route via a gateway.
var ErrNoGateway6 = errors.New("portmap: no IPv6 default gateway")

// ErrNoGlobalIPv6 says the host has no global IPv6 address to open.
var ErrNoGlobalIPv6 = errors.New("portmap: no global IPv6 address")

// DefaultGateway6 returns the gateway of the kernel's IPv6 default route
// with the lowest metric; a link-local one carries its interface as
// zone. It is PinholeConfig.Gateway's default.
func DefaultGateway6() (netip.Addr, error) {
	return defaultGateway(route.DefaultIPv6, "IPv6 default gateway", ErrNoGateway6)
}

// PinholeConfig says which pinhole to keep. InternalPort and Address are
// required.
type PinholeConfig struct {
	// InternalPort is the tunnel's UDP port, opened on the host's global
	// IPv6 address.
	InternalPort uint16
	// Address returns the host's global IPv6 address now, or false when
	// it has none (netmon.GlobalIPv6). It is called at every check.
	Address func() (netip.Addr, bool)
	// Gateway returns the IPv6 gateway to ask; nil means DefaultGateway6.
	Gateway func() (netip.Addr, error)
	// Lifetime is asked for, in whole seconds; DefaultLifetime if zero.
	// The pinhole is renewed at half of what was granted.
	Lifetime time.Duration
	// Logf logs changes of state; nil means log.Printf.
	Logf func(format string, args ...any)
	// Now returns the time; nil means time.Now.
	Now func() time.Time

	// pcpIRT replaces RFC 6887's initial retransmission time, pcpPort
	// the server port (tests).
	pcpIRT  time.Duration
	pcpPort uint16
}

// PinholeState is what the gateway last granted, or why nothing is open.
type PinholeState struct {
	Open      bool
	Gateway   netip.Addr
	External  netip.AddrPort // the host's address and port, opened
	Lifetime  time.Duration
	GoodUntil time.Time
	Err       error // why nothing is open
}

// Pinhole keeps the tunnel port open on the host's global IPv6 address at
// its IPv6 gateway, by a PCP MAP request for that address (RFC 6887
// §6.1, "IPv6 firewall"): a home router that lets no flow in from
// outside (RFC 6092's recommended default) opens a pinhole for it, so
// that a peer's first packets get in even before this host sent any its
// way. Without PCP on the gateway there is no pinhole, and peers get in
// by hole punching as through a NAT (the tunnel sends to each peer along
// every path as soon as it learns of it). The pinhole is renewed at
// half its lifetime, asked again on Refresh (a network change) and
// deleted when Run returns.
type Pinhole struct {
	cfg      PinholeConfig
	lifetime time.Duration
	refresh  chan struct{}

	mu sync.Mutex
	st PinholeState
}

// NewPinhole returns a Pinhole for cfg. It panics without InternalPort
// or Address.
func NewPinhole(cfg PinholeConfig) *Pinhole {
	if cfg.InternalPort == 0 || cfg.Address == nil {
		panic("portmap: PinholeConfig.InternalPort and Address are required")
	}
	if cfg.Gateway == nil {
		cfg.Gateway = DefaultGateway6
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.pcpIRT == 0 {
		cfg.pcpIRT = pcpIRT
	}
	lt := cfg.Lifetime
	if lt <= 0 {
		lt = DefaultLifetime
	}
	return &Pinhole{
		cfg:      cfg,
		lifetime: min(max(lt/time.Second, 1), maxLifetimeSeconds) * time.Second,
		refresh:  make(chan struct{}, 1),
		st:       PinholeState{Err: errors.New("portmap: not asked yet")},
	}
}

// State returns what the gateway last granted, or why nothing is open.
func (p *Pinhole) State() PinholeState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// Refresh asks again at once: the network changed. It never blocks.
func (p *Pinhole) Refresh() {
	select {
	case p.refresh <- struct{}{}:
	default:
	}
}

// Run keeps the pinhole until ctx ends, then deletes it.
func (p *Pinhole) Run(ctx context.Context) error {
	var g *pcpGateway
	retry := defaultRetryMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			p.release(g)
			return nil
		case <-p.refresh:
			retry = defaultRetryMin
		case <-timer.C:
		}
		var wait time.Duration
		g, wait = p.check(ctx, g, &retry)
		// Since Go 1.23 a stopped or reset timer delivers nothing stale.
		timer.Stop()
		if wait > 0 {
			timer.Reset(wait)
		}
	}
}

// check asks the gateway for the pinhole (new, renewed or recreated)
// and returns the gateway to keep asking and how long to wait before the
// next check (0: until Refresh). retry is the wait after a failure,
// doubled at each one.
func (p *Pinhole) check(ctx context.Context, g *pcpGateway, retry *time.Duration) (*pcpGateway, time.Duration) {
	fail := func(gw netip.Addr, err error, wait time.Duration) time.Duration {
		p.mu.Lock()
		prev := p.st
		p.st = PinholeState{Gateway: gw, Err: err}
		p.mu.Unlock()
		switch {
		case !prev.Open && prev.Err != nil && prev.Err.Error() == err.Error():
			// Said already.
		case errors.Is(err, ErrNoGlobalIPv6):
			p.cfg.Logf("portmap: no IPv6 pinhole: %s", strings.TrimPrefix(err.Error(), "portmap: "))
		default:
			p.cfg.Logf("portmap: no IPv6 pinhole (%s): peers get in by hole punching", strings.TrimPrefix(err.Error(), "portmap: "))
		}
		return wait
	}
	a, ok := p.cfg.Address()
	if !ok {
		return nil, fail(netip.Addr{}, ErrNoGlobalIPv6, 0)
	}
	gw, err := p.cfg.Gateway()
	if err != nil {
		return nil, fail(netip.Addr{}, err, p.backoff(retry))
	}
	if g == nil || g.gw != gw || g.local != a {
		g = newPCPGateway(gw, p.cfg.pcpIRT) // a new nonce: a new mapping
		g.local = a
		if p.cfg.pcpPort != 0 {
			g.port = p.cfg.pcpPort
		}
	}
	res, err := g.Map(ctx, "pinhole UDP", p.cfg.InternalPort, netip.AddrPortFrom(a, p.cfg.InternalPort), p.lifetime, pcpProbeMRD)
	if ctx.Err() != nil {
		return g, 0
	}
	if err != nil {
		return g, fail(gw, err, p.backoff(retry))
	}
	*retry = defaultRetryMin
	now := p.cfg.Now()
	p.mu.Lock()
	prev := p.st
	p.st = PinholeState{Open: true, Gateway: gw, External: res.ext, Lifetime: res.lifetime, GoodUntil: now.Add(res.lifetime)}
	p.mu.Unlock()
	if !prev.Open || prev.External != res.ext || prev.Gateway != gw {
		p.cfg.Logf("portmap: IPv6 pinhole for %v open at %v by PCP (lifetime %v)", res.ext, gw, res.lifetime)
	}
	return g, max(res.lifetime/2, minRenewWait)
}

// backoff returns the wait after a failure and doubles the next.
func (p *Pinhole) backoff(retry *time.Duration) time.Duration {
	w := *retry
	*retry = min(2**retry, defaultRetryMax)
	return w
}

// release deletes an open pinhole (lifetime 0), waiting a second at most.
func (p *Pinhole) release(g *pcpGateway) {
	st := p.State()
	if g == nil || !st.Open {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseWait)
	defer cancel()
	if _, err := g.Map(ctx, "delete pinhole UDP", p.cfg.InternalPort, st.External, 0, pcpDeleteMRD); err != nil {
		p.cfg.Logf("portmap: deleting the IPv6 pinhole: %v", err)
	}
	p.mu.Lock()
	p.st = PinholeState{Err: errors.New("portmap: deleted")}
	p.mu.Unlock()
}
