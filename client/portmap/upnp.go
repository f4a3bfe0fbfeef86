package portmap

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/huin/goupnp/soap"
)

// UPnP IGD (WANIPConnection:2, else :1) through github.com/huin/goupnp.
// The library does SSDP discovery (an M-SEARCH to 239.255.255.250:1900
// from every multicast-capable IPv4 address of the host, answers
// collected for 2 s), fetches the device description over HTTP and makes
// the SOAP calls; every call takes a context.

// DefaultUPnPCheck is how often, between renewals, a UPnP IGD mapping is
// looked up on the router (GetSpecificPortMappingEntry) when
// Config.UPnPCheck is zero. UPnP has no epoch and no announcement, so
// this lookup is how a router that restarted and lost its mappings is
// noticed: within this interval rather than at the next renewal, half a
// lease away.
const DefaultUPnPCheck = 15 * time.Second

// UPnP error codes this package acts on (UPnP IGD WANIPConnection:2
// §2.5.16).
const (
	upnpNoSuchEntry         = 714 // NoSuchEntryInArray
	upnpConflict            = 718 // ConflictInMappingEntry
	upnpOnlyPermanentLeases = 725 // OnlyPermanentLeasesSupported
)

const upnpDescription = "btmm tunnel"

// UPnPError is a SOAP fault from the router: it speaks UPnP IGD but
// refused the action.
type UPnPError struct {
	Op   string // "external address", "map UDP", "look up UDP", "delete UDP"
	Code int    // the UPnP error code (0 if the fault had none)
	Desc string // its description, as the router sent it
}

func (e *UPnPError) Error() string {
	return fmt.Sprintf("portmap: UPnP IGD %s: error %d (%s)", e.Op, e.Code, e.Desc)
}

// igdClient is what this package uses of goupnp's WANIPConnection1 and
// WANIPConnection2 clients (the same methods on both).
type igdClient interface {
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
	AddPortMappingCtx(ctx context.Context, remoteHost string, extPort uint16, protocol string, intPort uint16, intClient string, enabled bool, desc string, lease uint32) error
	GetSpecificPortMappingEntryCtx(ctx context.Context, remoteHost string, extPort uint16, protocol string) (intPort uint16, intClient string, enabled bool, desc string, lease uint32, err error)
	DeletePortMappingCtx(ctx context.Context, remoteHost string, extPort uint16, protocol string) error
}

// igdService is one router's WANIPConnection service.
type igdService struct {
	igdClient
	version  int      // 2 or 1
	location *url.URL // the device description's URL
	// v2 is the same client as a WANIPConnection2, for AddAnyPortMapping;
	// nil for version 1.
	v2 *internetgateway2.WANIPConnection2
}

// upnpState is the UPnP IGD state of one gateway, owned by Run.
type upnpState struct {
	svc       *igdService
	port      uint16    // the external port mapped; 0 if none
	permanent bool      // the router takes only lease 0 (error 725)
	renewAt   time.Time // when the lease is to be renewed; zero: never (permanent)
}

// discoverIGD finds the WANIPConnection service of the router at gw:
// SSDP searches for WANIPConnection:2 and :1 at once (2 s), and the
// first answer whose description is on gw wins, version 2 before 1.
// Routers elsewhere on the LAN are not used: the mapping must be made on
// the default gateway. Finding none is a *NoNATPMPError for UPnP.
func discoverIGD(ctx context.Context, gw netip.Addr) (*igdService, error) {
	var (
		wg     sync.WaitGroup
		v2     []*internetgateway2.WANIPConnection2
		v1     []*internetgateway2.WANIPConnection1
		e2, e1 error
	)
	wg.Add(2)
	go func() { defer wg.Done(); v2, _, e2 = internetgateway2.NewWANIPConnection2ClientsCtx(ctx) }()
	go func() { defer wg.Done(); v1, _, e1 = internetgateway2.NewWANIPConnection1ClientsCtx(ctx) }()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	onGateway := func(u *url.URL) bool {
		a, err := netip.ParseAddr(u.Hostname())
		return err == nil && a.Unmap() == gw
	}
	for _, c := range v2 {
		if onGateway(c.Location) {
			return &igdService{igdClient: c, version: 2, location: c.Location, v2: c}, nil
		}
	}
	for _, c := range v1 {
		if onGateway(c.Location) {
			return &igdService{igdClient: c, version: 1, location: c.Location}, nil
		}
	}
	why := ErrNoAnswer
	if e2 != nil && e1 != nil {
		why = e2
	}
	return nil, &NoNATPMPError{Gateway: gw, Err: why, Protocols: []Protocol{ProtoUPnP}}
}

// igdByURL returns the WANIPConnection service described at loc,
// version 2 if it has one, else 1: discovery without SSDP.
func igdByURL(ctx context.Context, loc *url.URL) (*igdService, error) {
	if cs, err := internetgateway2.NewWANIPConnection2ClientsByURLCtx(ctx, loc); err == nil && len(cs) > 0 {
		return &igdService{igdClient: cs[0], version: 2, location: loc, v2: cs[0]}, nil
	}
	cs, err := internetgateway2.NewWANIPConnection1ClientsByURLCtx(ctx, loc)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("portmap: no WANIPConnection service at %v", loc)
	}
	return &igdService{igdClient: cs[0], version: 1, location: loc}, nil
}

// upnpError turns an error of a goupnp call for op into this package's:
// a SOAP fault becomes a *UPnPError; anything else (the router's HTTP
// server gone, say) is returned wrapped, and makes the service be found
// again.
func upnpError(op string, err error) error {
	if err == nil {
		return nil
	}
	var fault *soap.SOAPFaultError
	if errors.As(err, &fault) {
		return &UPnPError{Op: op, Code: fault.Detail.UPnPError.Errorcode, Desc: fault.Detail.UPnPError.ErrorDescription}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &upnpTransportError{Op: op, Err: err}
}

// upnpTransportError is a failed HTTP exchange with the router.
type upnpTransportError struct {
	Op  string
	Err error
}

func (e *upnpTransportError) Error() string {
	return fmt.Sprintf("portmap: UPnP IGD %s: %v", e.Op, e.Err)
}

func (e *upnpTransportError) Unwrap() error { return e.Err }

func upnpCode(err error) int {
	var ue *UPnPError
	if errors.As(err, &ue) {
		return ue.Code
	}
	return 0
}

// upnpCallTimeout bounds each SOAP call.
const upnpCallTimeout = 5 * time.Second

// checkUPnP keeps the mapping with UPnP IGD: the service is discovered
// the first time (and again when its HTTP server stops answering: a
// restarted router may listen on another port), then GetExternalIPAddress
// and AddPortMapping (renewal: the same again). Between renewals a timer
// check, and a check on an SSDP NOTIFY from a restarted router (see
// ssdp.go), only looks the mapping up (GetSpecificPortMappingEntry); if
// the router no longer has it, it lost its state: the mapping is added
// again and reported as a reboot.
func (c *Client) checkUPnP(ctx context.Context, st *runState, reason why, gw, local netip.Addr) (Mapping, bool, time.Duration, error) {
	c.mu.Lock()
	notified := c.upnpNotified
	c.upnpNotified = nil
	c.mu.Unlock()
	if notified != nil && (st.upnp.svc == nil || st.upnp.svc.location.String() != notified.String()) {
		// A NOTIFY named the router's new description: no search.
		if svc, err := igdByURL(ctx, notified); err == nil {
			st.upnp.svc = svc
			c.logf("portmap: UPnP IGD WANIPConnection:%d at %v", svc.version, svc.location)
		} else {
			st.upnp.svc = nil
		}
	}
	for attempt := 0; ; attempt++ {
		fresh := false
		if st.upnp.svc == nil {
			// Not cancelled by Refresh (only by Run's end): a network
			// change during the 2 s search would otherwise start it
			// over, and the client's own TUN device and routes make a
			// few just after it starts.
			ctx := ctx
			if st.runCtx != nil {
				ctx = st.runCtx
			}
			svc, err := c.discoverIGD(ctx, gw)
			if err != nil {
				return Mapping{}, false, 0, err
			}
			st.upnp.svc, fresh = svc, true
			c.logf("portmap: UPnP IGD WANIPConnection:%d at %v", svc.version, svc.location)
		}
		m, lost, wait, err := c.upnpOnce(ctx, st, reason, gw, local)
		if err == nil {
			c.setUPnPLocation(st.upnp.svc.location.String())
		}
		var te *upnpTransportError
		if errors.As(err, &te) {
			st.upnp.svc = nil
			if !fresh && attempt == 0 {
				continue // found again, and asked again
			}
			err = &NoNATPMPError{Gateway: gw, Err: err, Protocols: []Protocol{ProtoUPnP}}
		}
		return m, lost, wait, err
	}
}

func (c *Client) upnpOnce(ctx context.Context, st *runState, reason why, gw, local netip.Addr) (Mapping, bool, time.Duration, error) {
	svc := st.upnp.svc
	call := func(f func(ctx context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, upnpCallTimeout)
		defer cancel()
		err := f(cctx)
		if err != nil && ctx.Err() != nil {
			return ctx.Err() // goupnp wraps the HTTP error with %v
		}
		return err
	}
	var extStr string
	if err := call(func(ctx context.Context) (err error) { extStr, err = svc.GetExternalIPAddressCtx(ctx); return err }); err != nil {
		return Mapping{}, false, 0, upnpError(opNameExternal, err)
	}
	ext, err := netip.ParseAddr(extStr)
	if err != nil || !ext.Unmap().Is4() || ext.IsUnspecified() {
		return Mapping{}, false, 0, &badAnswerError{Proto: ProtoUPnP, Op: opNameExternal, Gateway: gw, Err: fmt.Errorf("external address %q", extStr)}
	}
	ext = ext.Unmap()
	internal := c.cfg.InternalPort
	now := c.now()
	lost := false
	if l := st.last; st.proto == ProtoUPnP && st.upnp.port != 0 && l.Valid() && (reason == whyTimer || reason == whyAnnouncement) && (st.upnp.renewAt.IsZero() || now.Before(st.upnp.renewAt)) {
		// Between renewals: is the mapping still there?
		var (
			intPort   uint16
			intClient string
			enabled   bool
		)
		err := call(func(ctx context.Context) (err error) {
			intPort, intClient, enabled, _, _, err = svc.GetSpecificPortMappingEntryCtx(ctx, "", st.upnp.port, "UDP")
			return err
		})
		client, _ := netip.ParseAddr(intClient)
		switch err = upnpError(opNameLookup, err); {
		case err == nil && intPort == internal && client.Unmap() == local && enabled:
			m := l
			m.External = netip.AddrPortFrom(ext, st.upnp.port)
			m.DoubleNAT = IsSharedOrPrivate(ext)
			until := c.upnpCheck // a permanent mapping: never renewed
			if !st.upnp.renewAt.IsZero() {
				until = st.upnp.renewAt.Sub(now)
			}
			return m, false, c.upnpWait(until), nil
		case err == nil || upnpCode(err) == upnpNoSuchEntry:
			lost = true // gone (or someone else's now): the router lost it
		default:
			return Mapping{}, false, 0, err
		}
	}

	suggest := st.upnp.port
	if suggest == 0 {
		suggest = internal
	}
	lease := uint32(min(int64(c.lifetime/time.Second), 1<<32-1))
	if st.upnp.permanent {
		lease = 0
	}
	st.lastSent = ProtoUPnP
	add := func(port uint16, lease uint32) error {
		return upnpError(opNameMap, call(func(ctx context.Context) error {
			return svc.AddPortMappingCtx(ctx, "", port, "UDP", internal, local.String(), true, upnpDescription, lease)
		}))
	}
	port := suggest
	err = add(port, lease)
	if upnpCode(err) == upnpOnlyPermanentLeases && lease != 0 {
		c.logf("portmap: UPnP IGD at %v takes only permanent mappings; mapping port %d without a lease (deleted on exit)", gw, internal)
		st.upnp.permanent, lease = true, 0
		err = add(port, lease)
	}
	if upnpCode(err) == upnpConflict {
		// The port is someone else's: let the router choose (IGD:2), or
		// try a few random ones (IGD:1).
		if svc.v2 != nil {
			err = upnpError(opNameMap, call(func(ctx context.Context) (err error) {
				port, err = svc.v2.AddAnyPortMappingCtx(ctx, "", suggest, "UDP", internal, local.String(), true, upnpDescription, lease)
				return err
			}))
		} else {
			for range 3 {
				port = uint16(1024 + rand.N(65535-1024))
				if err = add(port, lease); upnpCode(err) != upnpConflict {
					break
				}
			}
		}
	}
	if err != nil {
		return Mapping{}, false, 0, err
	}
	if port == 0 {
		return Mapping{}, false, 0, &badAnswerError{Proto: ProtoUPnP, Op: opNameMap, Gateway: gw, Err: errors.New("external port 0")}
	}
	now = c.now()
	st.upnp.port = port
	m := Mapping{
		External:  netip.AddrPortFrom(ext, port),
		Internal:  internal,
		Lifetime:  time.Duration(lease) * time.Second,
		DoubleNAT: IsSharedOrPrivate(ext),
		Gateway:   gw,
	}
	renew := c.upnpCheck
	st.upnp.renewAt = time.Time{} // a permanent mapping: never renewed, only looked up
	if lease != 0 {
		renew = m.Lifetime / 2
		m.GoodUntil, m.RenewAt = now.Add(m.Lifetime), now.Add(renew)
		st.mayHoldUntil = m.GoodUntil
		st.upnp.renewAt = m.RenewAt
	}
	return m, lost, c.upnpWait(renew), nil
}

// setUPnPLocation records the description URL of the UPnP IGD that holds
// the mapping, for readNotifies ("": none does).
func (c *Client) setUPnPLocation(loc string) {
	c.mu.Lock()
	c.upnpLocation = loc
	c.mu.Unlock()
}

// upnpWait is the wait before the next timer check: until the renewal,
// but no longer than the lookup interval.
func (c *Client) upnpWait(untilRenew time.Duration) time.Duration {
	return max(min(untilRenew, c.upnpCheck), minRenewWait)
}

// deleteUPnP deletes the mapping (DeletePortMapping).
func (c *Client) deleteUPnP(ctx context.Context, st *runState) error {
	if st.upnp.svc == nil || st.upnp.port == 0 {
		return errors.New("no UPnP IGD service known")
	}
	return upnpError(opNameDelete, st.upnp.svc.DeletePortMappingCtx(ctx, "", st.upnp.port, "UDP"))
}
