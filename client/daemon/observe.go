package daemon

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/openbtmm/btmm/client/discover"
	"github.com/openbtmm/btmm/client/endpoint"
	"github.com/openbtmm/btmm/client/portmap"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// When no mapping protocol gives the host a mapping it can publish (none
// answers, or the gateway is itself behind a NAT: carrier-grade NAT, NAT
// behind NAT, a routed private network), the daemon asks the server from
// the tunnel's own socket where the tunnel's packets come from, and
// publishes that (package client/endpoint). A peer that learns of this
// host sends to that endpoint, and this host sends to the peer as soon as
// it learns of it (the tunnel's first packet to a new endpoint goes at
// once): through NATs whose mapping does not depend on the destination,
// each side's packets open the way for the other's (hole punching). It
// asks two ports of the server, to tell a NAT whose mapping does depend
// on the destination, where no direct path is possible; status says so.

// observeInterval is how often the endpoint is asked again while it is the
// one published. The question also keeps the NAT's mapping of the tunnel's
// port alive (NATs commonly forget an idle UDP mapping after 30 s or more).
const observeInterval = 25 * time.Second

// observeEarly: a first mapping check that has not answered this long
// after the start is not waited for. PCP and NAT-PMP answer within tens
// of milliseconds when the gateway speaks them; what takes longer is a
// UPnP IGD's search (2 s) or a gateway that stays silent. Meanwhile the
// endpoint the server sees is published, so that peers can reach the
// host by hole punching at once; a mapping that comes later replaces it
// (one more UPDATE).
const observeEarly = 300 * time.Millisecond

// observation is the last answer, for status.
type observation struct {
	Endpoint netip.AddrPort
	Mapping  endpoint.Mapping
	At       time.Time
	Err      error
}

type observer struct {
	kick chan struct{}
	mu   sync.Mutex
	last observation
}

func newObserver() *observer { return &observer{kick: make(chan struct{}, 1)} }

// restart forgets the last answer, so that the next one is published
// whatever it is (a mapping was published meanwhile), and asks now.
func (o *observer) restart() {
	o.mu.Lock()
	o.last = observation{}
	o.mu.Unlock()
	o.wake()
}

// wake asks the observer to ask again now.
func (o *observer) wake() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

func (o *observer) get() observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// unusable reports whether m gives no endpoint to publish: no mapping;
// one whose external address is itself private (a NAT behind a NAT); or
// "no NAT here" on a private address (a routed private network, whose
// gateway is not the NAT: RFC 6281 §4.4.2).
func unusable(m portmap.Mapping) bool {
	if !m.Valid() && !m.Public {
		return true
	}
	return portmap.IsSharedOrPrivate(m.External.Addr())
}

// observe runs while the daemon does: whenever the mapping is unusable it
// asks for the server-observed endpoint, at once after a change and then
// every observeInterval, and publishes it.
func (d *Daemon) observe(ctx context.Context, key keyfile.Key, res *discover.Resolver) error {
	if d.tunnel == nil {
		return nil // nothing to publish an endpoint for
	}
	t := time.NewTicker(observeInterval)
	defer t.Stop()
	early := time.NewTimer(observeEarly)
	defer early.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.obs.kick:
		case <-t.C:
		case <-early.C:
		}
		d.mu.Lock()
		m := d.mapping
		d.mu.Unlock()
		if !unusable(m) {
			continue // a usable mapping
		}
		if !m.Valid() && m.Err == nil && time.Since(d.started) < observeEarly {
			continue // none yet: the first check still runs, and may answer at once
		}
		servers, err := d.endpointServers(ctx, key, res)
		o := observation{At: time.Now()}
		if err == nil {
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			o.Endpoint, o.Mapping, err = endpoint.Classify(qctx, d.tunnel, servers, key)
			cancel()
		}
		o.Err = err
		d.obs.mu.Lock()
		prev := d.obs.last
		d.obs.last = o
		d.obs.mu.Unlock()
		switch {
		case err != nil:
			d.logf("asking the server for this host's endpoint: %v", err)
		case o.Endpoint != prev.Endpoint || o.Mapping != prev.Mapping:
			if o.Mapping == endpoint.Dependent {
				d.logf("the server sees this host at %s, but the NAT gives each destination a port of its own: other hosts cannot reach this one directly (it can still reach hosts that have a mapping)", o.Endpoint)
			} else if !m.Valid() && m.Err == nil {
				d.logf("no mapping yet: publishing the endpoint the server sees, %s (NAT mapping %s), until one comes", o.Endpoint, o.Mapping)
			} else {
				d.logf("no usable mapping: publishing the endpoint the server sees, %s (NAT mapping %s)", o.Endpoint, o.Mapping)
			}
			d.publishHost()
		}
	}
}

// endpointServers returns the server addresses that answer endpoint
// questions over UDP: the query port that discovery asks, and the update
// listener that plain DNS clients are sent to (_dns-update._udp), if the
// zone offers one. With only the first, whether the NAT's mapping depends
// on the destination stays unknown.
func (d *Daemon) endpointServers(ctx context.Context, key keyfile.Key, res *discover.Resolver) ([]netip.AddrPort, error) {
	q, err := resolveAddrPort(ctx, d.cfg.Server)
	if err != nil {
		return nil, err
	}
	out := []netip.AddrPort{q}
	if upd, err := res.FindPlain(ctx, discover.Update, key.Name, d.cfg.Zone); err == nil && upd.Addr != q {
		out = append(out, upd.Addr)
	}
	return out, nil
}

// resolveAddrPort turns host:port into an address and port.
func resolveAddrPort(ctx context.Context, hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap, nil
	}
	ua, err := (&net.Resolver{}).LookupNetIP(ctx, "ip", hostportHost(hostport))
	if err != nil || len(ua) == 0 {
		return netip.AddrPort{}, errors.Join(errors.New("resolving the DNS server"), err)
	}
	_, port, _ := net.SplitHostPort(hostport)
	p, err := net.LookupPort("udp", port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ua[0].Unmap(), uint16(p)), nil
}

func hostportHost(hp string) string {
	h, _, err := net.SplitHostPort(hp)
	if err != nil {
		return hp
	}
	return h
}

// observedStatus fills in what status says of the server-observed
// endpoint.
func (d *Daemon) observedStatus(ms *MappingStatus) {
	o := d.obs.get()
	if o.Err != nil {
		ms.ObservedError = o.Err.Error()
	}
	if !o.Endpoint.IsValid() {
		return
	}
	ms.Observed = o.Endpoint.String()
	switch o.Mapping {
	case endpoint.Independent:
		ms.ObservedMapping = "independent"
		ms.Reach = "no mapping protocol: the other hosts reach this one at the endpoint the server sees, by hole punching"
	case endpoint.Dependent:
		ms.ObservedMapping = "dependent"
		ms.Reach = "the NAT gives each destination a port of its own (its mapping depends on the destination): no other host can reach this one directly, though it can reach hosts that have a mapping"
	default:
		ms.ObservedMapping = "unknown"
		ms.Reach = "no mapping protocol: published the endpoint the server sees; whether the NAT keeps it for every destination is unknown (one server port answered)"
	}
}
