package publish

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/backoff"
	"github.com/openbtmm/btmm/client/discover"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
)

// Config says where and how to publish. Resolver, Zone, Key are required.
type Config struct {
	Resolver *discover.Resolver
	Zone     string      // members.example.com.
	Key      keyfile.Key // the user's key; its name is the user's domain
	// Transport is "tls" (the default: RFC 6281 §7.2), "tcp" or "udp".
	Transport string
	// TLS is the base TLS configuration (roots or pin); the server name is
	// the SRV target's unless set.
	TLS   *tls.Config
	Lease time.Duration // asked; the server grants
	Logf  func(string, ...any)
	// Server, if set, skips discovery (host:port), for tests and for
	// servers that publish no SRV records.
	Server string
}

// Status is what the publisher last did, for `btmm-client status`.
type Status struct {
	Server    string    `json:"server"`
	Published time.Time `json:"published,omitzero"`
	Lease     string    `json:"lease,omitempty"`
	Refresh   time.Time `json:"refresh,omitzero"`
	Records   []string  `json:"records,omitempty"`
	Error     string    `json:"error,omitempty"`
	// Updates counts the UPDATEs that published the records, by the
	// server's answer: an RCODE's name, or "no answer".
	Updates map[string]uint64 `json:"updates,omitempty"`
}

// Publisher keeps one host's records published.
type Publisher struct {
	cfg  Config
	kick chan struct{}

	// mu guards following.
	mu     sync.Mutex
	host   *Host
	last   *Host // what was last published, for the services it dropped
	status Status
}

// New returns a publisher; nothing is sent before Run and Set.
func New(cfg Config) *Publisher {
	if cfg.Resolver == nil || cfg.Zone == "" || cfg.Key.Name == "" {
		panic("publish: Config needs Resolver, Zone and Key")
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Transport == "" {
		cfg.Transport = "tls"
	}
	return &Publisher{cfg: cfg, kick: make(chan struct{}, 1)}
}

// Set makes h the records to publish, at once. It never blocks.
func (p *Publisher) Set(h Host) {
	p.mu.Lock()
	p.host = &h
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Host returns what Set last gave, if anything.
func (p *Publisher) Host() (Host, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.host == nil {
		return Host{}, false
	}
	return *p.host, true
}

// Republish sends the records again at once (if Set gave any), as after
// the server came back: it may have lost them meanwhile, to their lease's
// end or to a restore. It never blocks.
func (p *Publisher) Republish() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Status returns what the publisher last did.
func (p *Publisher) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.status
	s.Records = append([]string(nil), s.Records...)
	s.Updates = maps.Clone(s.Updates)
	return s
}

// Run publishes whatever Set gave, refreshes it at 80 % of the granted
// lease plus up to 5 % more (RFC 9664 §5.2), retries failures with
// back-off, and removes the records when ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	var refresh <-chan time.Time
	var timer *time.Timer
	// A server that cannot be reached is tried again within seconds, so
	// that the records are back soon after it is; one that answers with
	// an error (a refused key, say) less and less often.
	unreachable := backoff.Backoff{Min: time.Second, Max: 2 * time.Second}
	refused := backoff.Backoff{Min: time.Second, Max: 5 * time.Minute}
	published := false
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			if !published {
				return nil
			}
			// A clean exit takes the records away; a crash leaves them
			// to their lease.
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.remove(rctx); err != nil {
				p.cfg.Logf("publish: removing the records: %v", err)
				return err
			}
			p.cfg.Logf("publish: removed the records")
			return nil
		case <-p.kick:
		case <-refresh:
		}
		p.mu.Lock()
		h := p.host
		p.mu.Unlock()
		if h == nil {
			continue
		}
		granted, err := p.publish(ctx, *h)
		var wait time.Duration
		if err != nil {
			if errors.As(err, new(*ErrRcode)) {
				wait = refused.Next()
			} else {
				wait = unreachable.Next()
			}
			p.cfg.Logf("publish: %v (trying again in %v)", err, wait.Round(time.Millisecond))
		} else {
			published = true
			unreachable.Reset()
			refused.Reset()
			wait = granted*8/10 + time.Duration(rand.Int64N(int64(granted/20)+1))
		}
		if timer != nil {
			timer.Stop()
		}
		timer = time.NewTimer(wait)
		refresh = timer.C
		p.mu.Lock()
		p.status.Refresh = time.Now().Add(wait)
		p.mu.Unlock()
	}
}

// publish sends one UPDATE that replaces the host's records and returns
// the lease the server granted.
func (p *Publisher) publish(ctx context.Context, h Host) (time.Duration, error) {
	recs, err := h.AllRecords()
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	prev := p.last
	p.mu.Unlock()
	m := h.replace(recs, prev)
	lease := p.cfg.Lease
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, updatelease.Lease{Lease: uint32(lease / time.Second)}.Option())
	r, server, err := p.send(ctx, m)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status.Server = server
	p.count(err)
	if err != nil {
		p.status.Error = err.Error()
		return 0, err
	}
	// RFC 9664 §4.2: without the option in the reply, keep to the lease
	// asked for; with it, to the granted one.
	if l, ok, _ := updatelease.From(r); ok {
		lease = time.Duration(l.Lease) * time.Second
	}
	p.status.Error = ""
	p.status.Published = time.Now()
	p.status.Lease = lease.String()
	p.status.Records = nil
	for _, rr := range recs {
		p.status.Records = append(p.status.Records, rr.String())
	}
	p.last = &h
	p.cfg.Logf("publish: registered %s at %s via %s, lease %v", h.HostName(), h.endpoints(), server, lease)
	if prev != nil {
		if dropped := h.dropped(prev); len(dropped) > 0 {
			p.mu.Unlock()
			p.unlist(ctx, h, dropped)
			p.mu.Lock()
		}
	}
	return lease, nil
}

// count counts an UPDATE's outcome; p.mu is held.
func (p *Publisher) count(err error) {
	if p.status.Updates == nil {
		p.status.Updates = make(map[string]uint64)
	}
	var rc *ErrRcode
	switch {
	case err == nil:
		p.status.Updates["NOERROR"]++
	case errors.As(err, &rc):
		p.status.Updates[dns.RcodeToString[rc.Rcode]]++
	default:
		p.status.Updates["no answer"]++
	}
}

// unlist takes the types out of the service-type enumeration where no
// host offers them any more (Host.unlistTypes). A failed prerequisite
// means another host still does: nothing to do.
func (p *Publisher) unlist(ctx context.Context, h Host, types []string) {
	for i, m := range h.unlistTypes(types) {
		_, _, err := p.send(ctx, m)
		var rc *ErrRcode
		if err != nil && !(errors.As(err, &rc) && rc.Rcode == dns.RcodeYXRrset) {
			p.cfg.Logf("publish: unlisting service type %s: %v", types[i], err)
		}
	}
}

func (p *Publisher) remove(ctx context.Context) error {
	p.mu.Lock()
	h := p.host
	p.mu.Unlock()
	if h == nil {
		return nil
	}
	if _, _, err := p.send(ctx, h.remove()); err != nil {
		return err
	}
	p.unlist(ctx, *h, h.serviceTypes())
	return nil
}

// tsigRoom is what the TSIG RR adds when the message is signed: its owner
// and algorithm names and a MAC of up to 64 octets.
const tsigRoom = 200

// ErrRcode is an UPDATE the server answered with an error.
type ErrRcode struct {
	Rcode     int
	TSIGError uint16
}

func (e *ErrRcode) Error() string {
	if e.TSIGError != 0 {
		return fmt.Sprintf("server answered %s (TSIG %s)", dns.RcodeToString[e.Rcode], dns.RcodeToString[int(e.TSIGError)])
	}
	return "server answered " + dns.RcodeToString[e.Rcode]
}

// Send signs an UPDATE of the caller's and exchanges it with the update
// server, as the publisher's own: for a record that is not one host's
// (btmm-client revoke). Run need not be running.
func (p *Publisher) Send(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	r, _, err := p.send(ctx, m)
	return r, err
}

// send signs m and exchanges it with the update server.
func (p *Publisher) send(ctx context.Context, m *dns.Msg) (*dns.Msg, string, error) {
	server, netw, tlsConf, err := p.endpoint(ctx)
	if err != nil {
		return nil, "", err
	}
	m.SetTsig(p.cfg.Key.Name, p.cfg.Key.Algorithm, 300, time.Now().Unix())
	if netw == "udp" && m.Len()+tsigRoom > dns.MinMsgSize {
		// RFC 2136 §2.1: UDP only if it fits, and a server's UDP buffer
		// may be 512 octets (CoreDNS's is), whatever our OPT RR says.
		netw = "tcp"
	}
	c := &dns.Client{Net: netw, TLSConfig: tlsConf, Timeout: 10 * time.Second, TsigProvider: tsigauth.HMAC(p.cfg.Key.Secret)}
	r, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && r.Truncated && netw == "udp" {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, server)
	}
	if r != nil && r.Rcode == dns.RcodeNotAuth {
		e := &ErrRcode{Rcode: r.Rcode}
		if t := r.IsTsig(); t != nil {
			e.TSIGError = t.Error
		}
		return nil, server, e
	}
	if err != nil {
		return nil, server, fmt.Errorf("update via %s: %w", server, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, server, &ErrRcode{Rcode: r.Rcode}
	}
	return r, server, nil
}

// endpoint finds the update server and how to reach it.
func (p *Publisher) endpoint(ctx context.Context) (server, netw string, conf *tls.Config, err error) {
	rt, err := p.cfg.Resolver.RouteTo(ctx, discover.Update, p.cfg.Key.Name, p.cfg.Zone, p.cfg.Transport, p.cfg.Server, p.cfg.TLS)
	if err != nil {
		return "", "", nil, fmt.Errorf("publish: %w", err)
	}
	return rt.Addr, rt.Network, rt.TLS, nil
}
