package portmap

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"
)

// why says what started a check.
type why int

const (
	whyStart        why = iota // Run began
	whyTimer                   // renewal, or retry after a failure
	whyRefresh                 // Refresh: the network changed
	whyAnnouncement            // the gateway announced something
)

// runState is the protocol state, owned by Run's goroutine.
type runState struct {
	gw      netip.Addr   // the gateway all of the following is about
	req     requester    // gw's NAT-PMP requester
	epoch   epochTracker // gw's NAT-PMP SSSoE
	granted uint16       // the external port gw granted last by NAT-PMP; 0 if none
	// mayHoldUntil is when a mapping gw may hold for us expires at the
	// latest: set before each mapping request is sent, so that an
	// unanswered one is deleted too.
	mayHoldUntil time.Time
	backoff      time.Duration // the last wait after a failure; 0 after a success

	// proto is the protocol that holds the mapping (ProtoNone if none);
	// lastSent the one that sent the last mapping request, which release
	// deletes with.
	proto, lastSent Protocol

	pcp      *pcpGateway    // gw's PCP requester (its nonce)
	pcpEpoch pcpEpoch       // gw's PCP epoch time
	pcpExt   netip.AddrPort // the external address and port PCP assigned last

	upnp upnpState // gw's UPnP IGD

	// runCtx is Run's ctx: a check's own ctx ends on Refresh too.
	runCtx context.Context

	last      Mapping // the last Mapping published
	published bool

	// requesters has one requester per gateway ever asked, kept so that a
	// request to a gateway waits for one abandoned earlier (see
	// pmpGateway) even if another gateway was asked in between.
	requesters map[netip.Addr]requester
}

// requesterFor returns the requester for gw, making it the first time.
func (c *Client) requesterFor(st *runState, gw netip.Addr) requester {
	r, ok := st.requesters[gw]
	if !ok {
		if st.requesters == nil {
			st.requesters = map[netip.Addr]requester{}
		}
		r = c.newRequester(gw)
		st.requesters[gw] = r
	}
	return r
}

// errNoExternal is a "success" that carries no usable address or port.
var errNoExternal = errors.New("portmap: NAT-PMP gateway answered success without an external address or port")

// check asks the gateway for a mapping with the protocol that holds it,
// or, if none does (or the network changed), with each protocol of the
// order in turn until one answers, and publishes the outcome. It returns
// how long to wait before the next check: until the renewal, or a
// back-off after a failure.
func (c *Client) check(ctx context.Context, st *runState, reason why) time.Duration {
	gw, err := c.cfg.Gateway()
	if err == nil && !gw.Unmap().Is4() {
		err = fmt.Errorf("portmap: gateway %v is not IPv4", gw)
	}
	if err != nil {
		return c.fail(ctx, st, netip.Addr{}, err)
	}
	gw = gw.Unmap()
	if gw != st.gw {
		if st.gw.IsValid() {
			// The old gateway's mapping is forgotten, not deleted: it is
			// probably out of reach, and it expires on its own.
			c.logf("portmap: gateway changed from %v to %v", st.gw, gw)
		}
		st.gw, st.epoch, st.granted, st.mayHoldUntil = gw, epochTracker{}, 0, time.Time{}
		st.proto, st.lastSent = ProtoNone, ProtoNone
		st.pcp, st.pcpEpoch, st.pcpExt = newPCPGateway(gw, c.pcpIRT), pcpEpoch{}, netip.AddrPort{}
		st.upnp = upnpState{}
		st.req = c.requesterFor(st, gw)
		c.mu.Lock()
		c.gateway = gw
		c.mu.Unlock()
	}
	local, err := c.cfg.LocalAddr()
	if err != nil {
		return c.fail(ctx, st, local, err)
	}
	local = local.Unmap()
	if !IsSharedOrPrivate(local) {
		// RFC 6886 §3.8: port mapping is for hosts with private addresses.
		c.publish(st, Mapping{
			External: netip.AddrPortFrom(local, c.cfg.InternalPort),
			Internal: c.cfg.InternalPort,
			Public:   true,
			Gateway:  gw,
		}, false)
		st.backoff = 0
		st.proto = ProtoNone
		return c.retryMax
	}

	// The protocol holding the mapping is asked alone, except after a
	// network change (the gateway at the same address may be another
	// router now): then it is asked first, and the others after it.
	order := c.order
	if st.proto != ProtoNone {
		order = []Protocol{st.proto}
		if reason == whyRefresh {
			for _, p := range c.order {
				if p != st.proto {
					order = append(order, p)
				}
			}
		}
	}
	var errs []error
	for i, p := range order {
		// probe: another protocol follows if this one is silent, so do
		// not wait for it as long as for a gateway known to speak it.
		probe := p != st.proto && i < len(order)-1
		var m Mapping
		var lost bool
		var wait time.Duration
		switch p {
		case ProtoNATPMP:
			m, lost, wait, err = c.checkPMP(ctx, st, reason, gw, probe)
		case ProtoPCP:
			m, lost, wait, err = c.checkPCP(ctx, st, reason, gw, probe)
		case ProtoUPnP:
			m, lost, wait, err = c.checkUPnP(ctx, st, reason, gw, local)
		default:
			err = fmt.Errorf("portmap: unknown protocol %v", p)
		}
		if err == nil {
			if st.proto != p && len(c.order) > 1 {
				c.logf("portmap: gateway %v answers %v", gw, p)
			}
			st.proto = p
			st.backoff = 0
			m.Protocol = p
			if p != ProtoUPnP {
				c.setUPnPLocation("")
			}
			c.publish(st, m, lost && st.published)
			return max(wait, minRenewWait)
		}
		if ctx.Err() != nil {
			// Cancelled: by Run's ctx (Run deletes and returns) or by
			// Refresh (whose signal is pending). Nothing was learned.
			return c.retryMin
		}
		if p == st.proto && reason != whyRefresh {
			return c.fail(ctx, st, local, err)
		}
		errs = append(errs, err)
		if IsDoubleNAT(err) {
			// The gateway says it has no external address of its own:
			// it sits behind another NAT, and no other protocol of it
			// can give a mapping a peer could use (a UPnP IGD's would
			// have the same private external address). Its SSDP search
			// would only delay the daemon's asking the server.
			return c.fail(ctx, st, local, err)
		}
	}
	return c.fail(ctx, st, local, pickError(gw, order, errs))
}

// pickError chooses what to report when every protocol of order failed
// with errs: the first error that is an answer (a result code, a bad
// answer, a socket error), else, as every gateway was silent or does not
// speak them, one *NoNATPMPError naming them all.
func pickError(gw netip.Addr, order []Protocol, errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	for _, err := range errs {
		if !IsNoNATPMP(err) {
			return err
		}
	}
	var first *NoNATPMPError
	errors.As(errs[0], &first)
	return &NoNATPMPError{Gateway: gw, Err: first.Err, Protocols: order}
}

// checkPMP asks the gateway for its external address and the mapping
// with NAT-PMP. With probe, the first request is given up sooner
// (Probe), as another protocol is to be tried.
func (c *Client) checkPMP(ctx context.Context, st *runState, reason why, gw netip.Addr, probe bool) (Mapping, bool, time.Duration, error) {
	// Every successful answer goes through the epoch check: go-nat-pmp
	// returns no SSSoE with a result code.
	lost := false
	seen := func(epoch uint32) {
		if st.epoch.observe(epoch, c.now()) {
			lost = true
		}
	}
	ask := st.req.ExternalAddress
	if probe {
		ask = st.req.Probe
	}
	ext, epoch, err := ask(ctx)
	if err != nil {
		return Mapping{}, false, 0, err
	}
	seen(epoch)
	if lost && reason == whyAnnouncement && c.stateLossDelay > 0 {
		// A new external address is news at once, whatever happens to
		// the mapping: publish it with the port held so far (a gateway
		// that only changed its address, as miniupnpd does, keeps the
		// mapping), and recreate the mapping after the wait.
		if l := st.last; l.Valid() && !l.Public && l.Gateway == gw && ext.IsValid() && ext != l.External.Addr() {
			early := l
			early.External, early.Epoch = netip.AddrPortFrom(ext, l.External.Port()), epoch
			c.publish(st, early, false)
		}
		// Every client of the gateway heard the announcement.
		if !sleep(ctx, rand.N(c.stateLossDelay)) {
			return Mapping{}, false, 0, ctx.Err()
		}
	}

	// A renewal suggests the port granted before, so that a rebooted
	// gateway can give it back (RFC 6886 §3.3).
	suggest := st.granted
	if suggest == 0 {
		suggest = c.cfg.InternalPort
	}
	held, sent := st.mayHoldUntil, st.lastSent
	st.mayHoldUntil = later(held, c.now().Add(c.lifetime))
	st.lastSent = ProtoNATPMP
	lostBefore := lost
	lost = false
	mapped, granted, epoch, err := st.req.Map(ctx, c.cfg.InternalPort, suggest, c.lifetime)
	if err != nil {
		var re *ResultError
		if errors.As(err, &re) {
			// Refused: this request made nothing.
			st.mayHoldUntil, st.lastSent = held, sent
		}
		return Mapping{}, false, 0, err
	}
	seen(epoch)
	if lost {
		// The gateway rebooted between the two requests: the mapping is
		// new, and the address must be read again (RFC 6886 §3.7).
		if ext, epoch, err = st.req.ExternalAddress(ctx); err != nil {
			return Mapping{}, false, 0, err
		}
		seen(epoch)
	}
	lost = lost || lostBefore
	if granted == 0 || mapped == 0 || !ext.IsValid() || ext.IsUnspecified() {
		return Mapping{}, false, 0, errNoExternal
	}
	now := c.now()
	st.granted = mapped
	st.mayHoldUntil = now.Add(granted)
	m := Mapping{
		External:  netip.AddrPortFrom(ext, mapped),
		Internal:  c.cfg.InternalPort,
		Lifetime:  granted,
		Epoch:     epoch,
		GoodUntil: now.Add(granted),
		RenewAt:   now.Add(granted / 2),
		DoubleNAT: IsSharedOrPrivate(ext),
		Gateway:   gw,
	}
	return m, lost, granted / 2, nil
}

// checkPCP asks the gateway for the mapping with a PCP MAP request
// (RFC 6887 §11), which returns the external address and port at once.
// A renewal suggests what was assigned before (§11.2.1), so that a
// gateway that lost its state can give it back. With probe, the request
// is given up after pcpProbeMRD; otherwise it is retransmitted until the
// mapping held expires (or for pcpProbeMRD if none is held).
func (c *Client) checkPCP(ctx context.Context, st *runState, reason why, gw netip.Addr, probe bool) (Mapping, bool, time.Duration, error) {
	if reason == whyAnnouncement && st.proto == ProtoPCP && c.stateLossDelay > 0 {
		// An ANNOUNCE says the gateway lost its state (RFC 6887 §14.1.3),
		// and every client of the gateway heard it: wait a random time
		// before recreating the mapping. A new external address that
		// the gateway announced with NAT-PMP (miniupnpd sends that too
		// when its address changes, just before or after the ANNOUNCE)
		// is published meanwhile.
		c.earlyAddress(ctx, st, gw)
		wait := time.NewTimer(rand.N(c.stateLossDelay))
		defer wait.Stop()
	waiting:
		for {
			select {
			case <-wait.C:
				break waiting
			case <-ctx.Done():
				return Mapping{}, false, 0, ctx.Err()
			case <-c.pmpAnnounced:
				c.earlyAddress(ctx, st, gw)
			}
		}
	}
	mrd := pcpProbeMRD
	if c.cfg.RequestTimeout > 0 {
		mrd = c.cfg.RequestTimeout
	}
	if l := st.last; !probe && st.proto == ProtoPCP && l.Valid() && l.Gateway == gw {
		mrd = max(l.GoodUntil.Sub(c.now()), mrd)
	}
	held, sent := st.mayHoldUntil, st.lastSent
	st.mayHoldUntil = later(held, c.now().Add(c.lifetime))
	st.lastSent = ProtoPCP
	suggest := st.pcpExt
	if suggest.Port() == 0 {
		suggest = netip.AddrPortFrom(netip.Addr{}, c.cfg.InternalPort) // any address, our port
	}
	r, err := st.pcp.Map(ctx, opNameMap, c.cfg.InternalPort, suggest, c.lifetime, mrd)
	lost := false
	if r.hasEpoch {
		lost = st.pcpEpoch.observe(r.epoch, c.now())
	}
	if err != nil {
		var re *PCPResultError
		if errors.As(err, &re) {
			st.mayHoldUntil, st.lastSent = held, sent
		}
		return Mapping{}, false, 0, err
	}
	if r.lifetime == 0 || r.ext.Port() == 0 || !r.ext.Addr().Is4() || r.ext.Addr().IsUnspecified() {
		return Mapping{}, false, 0, errNoExternalPCP
	}
	now := c.now()
	st.pcpExt = r.ext
	st.mayHoldUntil = now.Add(r.lifetime)
	// RFC 6887 §11.2.1: renew at a random point between 1/2 and 5/8 of
	// the lifetime.
	renew := r.lifetime/2 + rand.N(r.lifetime/8+1)
	m := Mapping{
		External:  r.ext,
		Internal:  c.cfg.InternalPort,
		Lifetime:  r.lifetime,
		Epoch:     r.epoch,
		GoodUntil: now.Add(r.lifetime),
		RenewAt:   now.Add(renew),
		DoubleNAT: IsSharedOrPrivate(r.ext.Addr()),
		Gateway:   gw,
	}
	return m, lost, renew, nil
}

// earlyAddress publishes, for a PCP mapping, the new external address of
// a NAT-PMP announcement, as checkPMP does: the address is news at once,
// and a gateway that lost no mapping (miniupnpd, which only changed its
// address) keeps the port. PCP has no request that only reads the
// address, but a gateway that announces with NAT-PMP answers NAT-PMP's
// external address request, which changes nothing on it: the address is
// published if that answer confirms it.
func (c *Client) earlyAddress(ctx context.Context, st *runState, gw netip.Addr) {
	c.mu.Lock()
	announced := c.announcedExt
	c.announcedExt = netip.Addr{}
	c.mu.Unlock()
	l := st.last
	if !announced.IsValid() || !l.Valid() || l.Public || l.Gateway != gw || announced == l.External.Addr() {
		return
	}
	if ext, _, err := st.req.Probe(ctx); err == nil && ext == announced {
		early := l
		early.External = netip.AddrPortFrom(ext, l.External.Port())
		early.DoubleNAT = IsSharedOrPrivate(ext)
		c.publish(st, early, false)
	}
}

// errNoExternalPCP is a PCP success that carries no usable address or port.
var errNoExternalPCP = errors.New("portmap: PCP gateway answered success without an external IPv4 address, port or lifetime")

// fail publishes the Mapping that follows from err and returns the
// back-off before the next check.
func (c *Client) fail(ctx context.Context, st *runState, local netip.Addr, err error) time.Duration {
	if ctx.Err() != nil {
		// Cancelled: by Run's ctx (Run deletes and returns) or by Refresh
		// (whose signal is pending). Nothing was learned.
		return c.retryMin
	}
	st.backoff = min(max(2*st.backoff, c.retryMin), c.retryMax)
	wait := st.backoff
	m := Mapping{Internal: c.cfg.InternalPort, Gateway: st.gw, Err: err}
	var bad *badAnswerError
	if IsNoNATPMP(err) || errors.As(err, &bad) {
		if l := st.last; l.Valid() && !l.Public && l.Gateway == st.gw && (c.now().Before(l.GoodUntil) || l.Protocol == ProtoUPnP && l.Lifetime == 0) {
			// A renewal went unanswered (or the answer was garbled):
			// the mapping is still good for a while, so keep it and
			// try again before it expires.
			c.logf("portmap: renewing %v: %v; keeping it until %v", l, err, l.GoodUntil.Format(time.TimeOnly))
			if l.GoodUntil.IsZero() { // a permanent UPnP lease
				return wait
			}
			return min(wait, max(l.GoodUntil.Sub(c.now()), minRenewWait))
		}
	}
	// No mapping is held now: the next check asks every protocol again.
	st.proto = ProtoNone
	c.setUPnPLocation("")
	if IsNoNATPMP(err) {
		// RFC 6886 §3.8, RFC 6281 §4.1: a routed network.
		m.External = netip.AddrPortFrom(local, c.cfg.InternalPort)
		m.Public = true
	}
	c.publish(st, m, false)
	return wait
}

// release deletes the mapping, if the gateway may still hold one, with
// the protocol of the last mapping request: for NAT-PMP a request of
// lifetime 0 and suggested port 0 (RFC 6886 §3.4), sent twice at most
// (deleteTimeout); for PCP a MAP request of lifetime 0 with the mapping's
// nonce (RFC 6887 §15), sent once (pcpDeleteMRD); for UPnP IGD a
// DeletePortMapping. If a NAT-PMP request abandoned by a cancelled check
// is still outstanding, the deletion waits for it, up to releaseWait, and
// is not sent at all if it is still outstanding then: the mapping
// expires on its own.
func (c *Client) release(st *runState) {
	c.mu.Lock()
	c.current = Mapping{}
	c.mu.Unlock()
	permanent := st.lastSent == ProtoUPnP && st.upnp.permanent && st.upnp.port != 0
	if !st.gw.IsValid() || !permanent && (st.mayHoldUntil.IsZero() || !c.now().Before(st.mayHoldUntil)) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseWait+deleteTimeout)
	defer cancel()
	var err error
	switch st.lastSent {
	case ProtoNATPMP:
		err = st.req.Delete(ctx, c.cfg.InternalPort)
	case ProtoPCP:
		_, err = st.pcp.Map(ctx, opNameDelete, c.cfg.InternalPort, st.pcpExt, 0, pcpDeleteMRD)
	case ProtoUPnP:
		err = c.deleteUPnP(ctx, st)
	default:
		return
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("gave up after %v, an earlier request being still outstanding; it expires by %v",
				releaseWait+deleteTimeout, st.mayHoldUntil.Format(time.TimeOnly))
		}
		c.logf("portmap: deleting the mapping of port %d on %v (%v): %v", c.cfg.InternalPort, st.gw, st.lastSent, err)
		return
	}
	c.logf("portmap: deleted the mapping of port %d on %v (%v)", c.cfg.InternalPort, st.gw, st.lastSent)
}

// sleep waits for d or until ctx is done, and reports whether it waited
// for d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
