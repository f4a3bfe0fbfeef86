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
	req     requester    // gw's
	epoch   epochTracker // gw's SSSoE
	granted uint16       // the external port gw granted last; 0 if none
	// mayHoldUntil is when a mapping gw may hold for us expires at the
	// latest: set before each mapping request is sent, so that an
	// unanswered one is deleted too.
	mayHoldUntil time.Time
	backoff      time.Duration // the last wait after a failure; 0 after a success

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

// check asks the gateway for its external address and the mapping, and
// publishes the outcome. It returns how long to wait before the next
// check: half the granted lifetime, or a back-off after a failure.
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
		// RFC 6886 §3.8: NAT-PMP is for hosts with private addresses.
		c.publish(st, Mapping{
			External: netip.AddrPortFrom(local, c.cfg.InternalPort),
			Internal: c.cfg.InternalPort,
			Public:   true,
			Gateway:  gw,
		}, false)
		st.backoff = 0
		return c.retryMax
	}

	// Every successful answer goes through the epoch check: go-nat-pmp
	// returns no SSSoE with a result code.
	lost := false
	seen := func(epoch uint32) {
		if st.epoch.observe(epoch, c.now()) {
			lost = true
		}
	}
	ext, epoch, err := st.req.ExternalAddress(ctx)
	if err != nil {
		return c.fail(ctx, st, local, err)
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
			return c.retryMin // ctx is done; Run sees to that
		}
	}

	// A renewal suggests the port granted before, so that a rebooted
	// gateway can give it back (RFC 6886 §3.3).
	suggest := st.granted
	if suggest == 0 {
		suggest = c.cfg.InternalPort
	}
	held := st.mayHoldUntil
	st.mayHoldUntil = later(held, c.now().Add(c.lifetime))
	lostBefore := lost
	lost = false
	mapped, granted, epoch, err := st.req.Map(ctx, c.cfg.InternalPort, suggest, c.lifetime)
	if err != nil {
		var re *ResultError
		if errors.As(err, &re) {
			st.mayHoldUntil = held // refused: this request made nothing
		}
		return c.fail(ctx, st, local, err)
	}
	seen(epoch)
	if lost {
		// The gateway rebooted between the two requests: the mapping is
		// new, and the address must be read again (RFC 6886 §3.7).
		if ext, epoch, err = st.req.ExternalAddress(ctx); err != nil {
			return c.fail(ctx, st, local, err)
		}
		seen(epoch)
	}
	lost = lost || lostBefore
	if granted == 0 || mapped == 0 || !ext.IsValid() || ext.IsUnspecified() {
		return c.fail(ctx, st, local, errNoExternal)
	}
	now := c.now()
	st.granted = mapped
	st.mayHoldUntil = now.Add(granted)
	st.backoff = 0
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
	c.publish(st, m, lost && st.published)
	return max(granted/2, minRenewWait)
}

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
		if l := st.last; l.Valid() && !l.Public && l.Gateway == st.gw && c.now().Before(l.GoodUntil) {
			// A renewal went unanswered (or the answer was garbled):
			// the mapping is still good for a while, so keep it and
			// try again before it expires.
			c.logf("portmap: renewing %v: %v; keeping it until %v", l, err, l.GoodUntil.Format(time.TimeOnly))
			return min(wait, max(l.GoodUntil.Sub(c.now()), minRenewWait))
		}
	}
	if IsNoNATPMP(err) {
		// RFC 6886 §3.8, RFC 6281 §4.1: a routed network.
		m.External = netip.AddrPortFrom(local, c.cfg.InternalPort)
		m.Public = true
	}
	c.publish(st, m, false)
	return wait
}

// release deletes the mapping, if the gateway may still hold one, with a
// request of lifetime 0 and suggested port 0 (RFC 6886 §3.4), sent twice
// at most (deleteTimeout). If a request abandoned by a cancelled check is
// still outstanding, the deletion waits for it, up to releaseWait, and is
// not sent at all if it is still outstanding then: the mapping expires on
// its own.
func (c *Client) release(st *runState) {
	c.mu.Lock()
	c.current = Mapping{}
	c.mu.Unlock()
	if !st.gw.IsValid() || st.mayHoldUntil.IsZero() || !c.now().Before(st.mayHoldUntil) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseWait+deleteTimeout)
	defer cancel()
	if err := st.req.Delete(ctx, c.cfg.InternalPort); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("gave up after %v, an earlier request being still outstanding; it expires by %v",
				releaseWait+deleteTimeout, st.mayHoldUntil.Format(time.TimeOnly))
		}
		c.logf("portmap: deleting the mapping of port %d on %v: %v", c.cfg.InternalPort, st.gw, err)
		return
	}
	c.logf("portmap: deleted the mapping of port %d on %v", c.cfg.InternalPort, st.gw)
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
