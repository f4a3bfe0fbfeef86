// Package portmap keeps a mapping of the tunnel's UDP port on the default
// gateway, as Back to My Mac does with NAT-PMP (RFC 6281 §4), and says
// where the host can be reached from outside: the gateway's external
// address and the mapped port, or, with no NAT, the host's own address
// and port. It speaks three port mapping protocols and uses the first
// the gateway answers.
//
// # Which protocol, in which order
//
// A Client asks, in Config.Protocols' order, by default (DefaultOrder):
//
//  1. PCP, the Port Control Protocol (RFC 6887), a MAP request for the
//     UDP port. PCP is NAT-PMP's standards-track successor on the same
//     port (5351), and RFC 6886 §1.1 asks clients to try it first. One
//     round trip gives the external address and port; a random nonce ties
//     answers to the request (no reply can be taken for another's); its
//     epoch shows a gateway that lost its state; and miniupnpd, the most
//     common implementation, multicasts an ANNOUNCE when it restarts. A
//     gateway that speaks only NAT-PMP answers a PCP request at once with
//     Unsupported Version (RFC 6886 §1.1), so asking PCP first costs such
//     a gateway one round trip.
//  2. NAT-PMP (RFC 6886): the same port and the same model, for gateways
//     without PCP (older AirPort base stations, older firmware). It has
//     an epoch (SSSoE) and announcements too.
//  3. UPnP IGD (WANIPConnection:2, else :1) through github.com/huin/goupnp.
//     More home routers have it than PCP or NAT-PMP, but it is the
//     heaviest and slowest to find (an SSDP multicast search, 2 s, then
//     XML over HTTP and SOAP), and it has neither an epoch nor
//     announcements of its own, so it comes last: it is asked only when
//     nothing answers on port 5351.
//
// What a protocol's absence costs: an ICMP port unreachable from port 5351
// (nothing listens there) or an Unsupported Version ends PCP and NAT-PMP
// at once. A silent port 5351 costs PCP its probe bound (5 s: sends at 0
// and about 3 s) and NAT-PMP its probe bound (2 s: sends at 0, 250 and
// 750 ms), then the SSDP search takes 2 s. The protocol that answered
// holds the mapping (Mapping.Protocol) and is asked alone from then on;
// after Refresh (a network change: the gateway at the same address may
// be another router) it is asked first and the others after it. When no
// protocol holds a mapping any more (refused, or expired unanswered), the
// next check asks all of them in order again. A protocol that refuses
// (a result code) does not stop the others from being asked; if all
// fail, Err is the first refusal, or, if none answered at all, one
// *NoNATPMPError naming every protocol asked (and the host is taken to
// be on a public network).
//
// The host's address decides whether any of them is asked: only when it
// is private (RFC 1918) or shared (100.64/10). Otherwise the host is
// taken to be on a public network, and the Mapping is Public.
//
// # The state machine
//
// A Client does its work in Run, which owns all the protocol state. It
// follows the client behaviour of RFC 6886 (§3.2–§3.7) and RFC 6887
// (§8, §11), and the same plan for UPnP IGD:
//
//	PROBE  --a protocol maps the port--> MAPPED (by that protocol)
//	  \--no protocol answers / ICMP unreachable--> PUBLIC (probe again later, at once after Refresh or an announcement)
//	  \--result code / malformed answer--> NO MAPPING (Err says why; probe again later)
//	MAPPED --renewal time--> renew (suggesting the port granted) --> MAPPED
//	MAPPED --epoch check fails, or UPnP mapping gone (gateway rebooted)--> mapping recreated --> MAPPED (Change sent)
//	MAPPED --announcement / SSDP NOTIFY / Refresh--> re-check at once
//	any    --ctx done--> delete (lifetime 0 / DeletePortMapping), Run returns
//
// NAT-PMP: every check (the first, each renewal, each re-check) asks the
// gateway for its external address and then sends the mapping request,
// so every check both refreshes the mapping and re-reads the address.
// Every successful response goes through RFC 6886 §3.6's epoch check: an
// SSSoE more than 2 s below last + 7/8 of the local time elapsed means
// the gateway lost its mappings; the mapping request of the same check
// then recreates the mapping (suggesting the port granted before), and a
// Change is sent even if nothing else changed. Renewal at half the
// granted lifetime.
//
// PCP: every check sends one MAP request (address and port come back
// together), with the mapping's nonce, drawn once per gateway and used
// for every request about the mapping (retransmissions, renewals, its
// recreation, its deletion), and the host's address as IPv4-mapped IPv6
// (the address the request leaves from, or the gateway answers
// ADDRESS_MISMATCH). A renewal suggests the external address and port
// assigned before. Requests are retransmitted as RFC 6887 §8.1.1 says
// (after 3 s ±10 %, then doubling, up to 1024 s), bounded: while probing
// by 5 s (Config.RequestTimeout in tests), while renewing a mapping held
// by its expiry. Datagrams that are no answer to the request (another
// nonce, port or opcode, malformed) are dropped and the wait goes on.
// Every response, an error included, goes through §8.5's epoch check
// (the server's epoch went back by more than 1 s, or its and our clock
// disagree on the time since the last response by more than 2 s + 1/16):
// a failed check means the gateway lost its state, and the Change says
// Reboot. On an ANNOUNCE (§14.1.3) the mapping is renewed after a random
// wait of up to Config.StateLossDelay; a new external address that the
// gateway announced with NAT-PMP meanwhile (miniupnpd announces an
// address change both ways) is published before the wait, once a NAT-PMP
// external address request (which changes nothing) confirms it. Renewal at a random point between
// 1/2 and 5/8 of the lifetime (§11.2.1). Result codes become a
// *PCPResultError; NETWORK_FAILURE counts as a double NAT (IsDoubleNAT).
// Deletion: a MAP with lifetime 0 and the nonce, sent once.
//
// UPnP IGD: the service is found by SSDP (WANIPConnection:2 and :1 at
// once; only a device whose description is on the default gateway
// counts) and kept; when its HTTP server stops answering (a restarted
// miniupnpd listens on a new port) it is found again. A check asks
// GetExternalIPAddress and AddPortMapping (the internal port, the
// host's address, the suggested external port; on ConflictInMappingEntry
// AddAnyPortMapping on IGD:2, random ports on IGD:1) with a lease of the
// lifetime; a router that takes only permanent mappings
// (OnlyPermanentLeasesSupported, 725) gets lease 0, which is never
// renewed and is deleted on exit. The lease is renewed at half its
// length, and in between, every Config.UPnPCheck (15 s), the mapping is
// looked up (GetSpecificPortMappingEntry): if it is gone, the router lost
// it, and it is added again (Reboot). An SSDP NOTIFY from the gateway
// with a new boot counter or description URL (what a restarted router
// multicasts) makes that lookup happen at once, at the new URL. SOAP
// faults become a *UPnPError; every call takes the check's context and
// is bounded by 5 s.
//
// Changes, Current and Refresh are safe for concurrent use and never
// block. Changes is coalesced: a reader that falls behind sees only the
// latest Mapping, and Run never waits for it.
//
// # NAT-PMP requests: go-nat-pmp and what this package adds
//
// The requests (external address, mapping, deletion) are made with
// github.com/jackpal/go-nat-pmp. The library encodes each request, sends
// it from a fresh UDP socket connected to the gateway's port 5351 (so an
// ICMP port unreachable is seen, and only the gateway's datagrams are
// read), resends it after 250 ms and then after doubling waits (RFC 6886
// §3.1: 9 sends, about 128 s; or until Config.RequestTimeout), checks the
// answer's version, result code, opcode and size, and decodes it.
//
// This package adds, around the library:
//   - cancellation: the library has no context, so each call runs in a
//     goroutine and the caller stops waiting when its context ends (Run's,
//     or a check cancelled by Refresh). The abandoned call finishes on its
//     own within the library's timeout; the next request to the same
//     gateway waits for it, so a gateway has one request from this client
//     at a time (§3.1);
//   - typed errors, from the library's error texts: a result code becomes
//     a *ResultError with its number; silence and ICMP port unreachable a
//     *NoNATPMPError (a public network); anything else the library
//     rejects, a malformed answer;
//   - the check that a mapping response is for our internal port (the
//     library checks only the opcode);
//   - the epoch check (from the SSSoE of the library's results), renewal
//     at half the lifetime suggesting the granted port, deletion, the
//     state machine, announcements, and Changes, Current and Refresh.
//
// The library's limits show in three ways. It takes the first datagram
// from the gateway as the answer, so a malformed one fails the request
// where §3.1 would drop it and keep waiting (a mapping in hand is kept
// until it expires; the check is retried with back-off). It returns no
// SSSoE with a result code, so failure responses escape the epoch check.
// And it only ever talks to port 5351.
//
// NAT-PMP maps the requests' source address, which is the kernel's choice
// toward the gateway (the library is not given a local address); the
// tunnel must send from that address and from Config.InternalPort.
//
// # Announcements
//
// Announcements are heard on a socket bound to 224.0.0.1:5350 with
// SO_REUSEADDR and SO_REUSEPORT, shared with any other NAT-PMP client on
// the host. Linux makes every interface with the MULTICAST flag a member
// of 224.0.0.1, so no group is joined and no multicast route is needed to
// receive; the LAN interface must have that flag (veth and Ethernet do,
// lo does not), and a firewall must let UDP to 224.0.0.1:5350 in. Only
// datagrams from the current gateway are considered, and only NAT-PMP
// external-address announcements (opcode 128) and PCP ANNOUNCE (version
// 2, opcode 0: what miniupnpd sends after a restart); each is a hint to
// re-check, never trusted for the address or the epoch. SSDP NOTIFYs are
// heard on 239.255.255.250:1900 (SO_REUSEADDR and SO_REUSEPORT too; the
// group joined on every multicast-capable interface, again after each
// Refresh) while UPnP IGD is among the protocols; see ssdp.go.
package portmap

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultLifetime is the mapping lifetime asked for when Config.Lifetime
// is zero: RFC 6281 §4.2's 3600 s (RFC 6886 recommends 7200 s).
const DefaultLifetime = 3600 * time.Second

const (
	defaultRetryMin       = 30 * time.Second
	defaultRetryMax       = 30 * time.Minute
	defaultStateLossDelay = 5 * time.Second        // RFC 6886 §3.7
	minRenewWait          = 250 * time.Millisecond // however short the granted lifetime
	// releaseWait is how long Run, when its ctx is done, waits for a
	// request still outstanding before it deletes the mapping.
	releaseWait = 2 * time.Second
)

// Config says how to keep the mapping. InternalPort is required; the
// zero value of every other field gives the behaviour of RFC 6886 and
// RFC 6281 on the real network.
type Config struct {
	// InternalPort is the local UDP port to map: the tunnel's (4500 by
	// default in btmm-client). It is also the external port asked for.
	// The tunnel must send from this port, since replies from the mapped
	// port leave through the mapping (RFC 6886 §3.3). Required: 0 would
	// mean "all ports" in a deletion.
	InternalPort uint16

	// Lifetime is the mapping lifetime asked for, in whole seconds;
	// DefaultLifetime if zero. The gateway may grant less; the mapping is
	// renewed at half of what was granted.
	Lifetime time.Duration

	// Gateway returns the IPv4 gateway to ask. nil means DefaultGateway
	// (the kernel's IPv4 default route). It is called at every check.
	Gateway func() (netip.Addr, error)

	// LocalAddr returns the host's primary IPv4 address. Private or
	// shared (IsSharedOrPrivate) means NAT-PMP is tried; anything else
	// means a public network. It is also the address of a Public mapping.
	// nil means the source address the kernel picks toward the gateway,
	// which is also the address NAT-PMP maps (the requests' source).
	LocalAddr func() (netip.Addr, error)

	// Logf logs; nil means log.Printf. Lines start with "portmap: ". Only
	// changes of state are logged, not every renewal.
	Logf func(format string, args ...any)

	// Protocols are the protocols to ask, in order; nil means
	// DefaultOrder (PCP, NAT-PMP, UPnP IGD). The first the gateway
	// answers holds the mapping (Mapping.Protocol).
	Protocols []Protocol

	// UPnPCheck is how often a UPnP IGD mapping is looked up on the
	// router between renewals, to notice a router that lost it (UPnP
	// has no epoch); zero means DefaultUPnPCheck.
	UPnPCheck time.Duration

	// Now returns the time; nil means time.Now. It dates mappings
	// (GoodUntil, RenewAt) and drives the epoch check. Waiting is always
	// done with real timers, for the durations that Now's times imply.
	Now func() time.Time

	// The remaining fields are for tests; their zero values are the
	// RFC's.

	// AnnounceAddr replaces DefaultAnnounceAddr (224.0.0.1:5350) as the
	// address the announcement socket binds. Port 0 binds an ephemeral
	// port (tests read it back).
	AnnounceAddr netip.AddrPort
	// SSDPAddr replaces DefaultSSDPAddr (239.255.255.250:1900) as the
	// address the SSDP NOTIFY socket binds (with UPnP IGD in Protocols).
	// Port 0 binds an ephemeral port (tests read it back).
	SSDPAddr netip.AddrPort
	// RequestTimeout bounds each external address and mapping request:
	// go-nat-pmp resends it after 250 ms, then after doubling waits, until
	// the timeout, and then it counts as unanswered. Zero means the
	// library's schedule, which is RFC 6886 §3.1's: 9 sends, about 128 s.
	// A deletion always gets 750 ms (two sends).
	RequestTimeout time.Duration
	// RetryMin and RetryMax bound the back-off between checks after a
	// failure or on a network without NAT-PMP (default 30 s, doubling to
	// 30 min; also how often a host with a public address re-checks).
	RetryMin, RetryMax time.Duration
	// StateLossDelay bounds the random wait before the mapping is
	// recreated when an announcement reveals lost state, so that all the
	// gateway's clients do not ask at once (RFC 6886 §3.7: 0–5 s). Zero
	// means 5 s; negative means no wait.
	StateLossDelay time.Duration
}

// Mapping is where the host can be reached, as last learned. It is a
// value: a Client never changes one it has handed out.
type Mapping struct {
	// External is the address and port to publish: the gateway's
	// external address and the mapped port, or, when Public, the host's
	// own address and the internal port. It is the zero AddrPort when
	// there is no usable mapping (see Err).
	External netip.AddrPort
	Internal uint16 // Config.InternalPort
	// Protocol is the protocol that holds the mapping: PCP, NAT-PMP or
	// UPnP IGD; ProtoNone when there is no mapping (Public, or Err).
	Protocol Protocol
	// Lifetime is the lifetime as granted (the UPnP lease); 0 when there
	// is no mapping, and for a permanent UPnP mapping (a router that
	// takes only lease 0).
	Lifetime time.Duration
	// Epoch is the gateway's epoch (NAT-PMP's SSSoE, PCP's epoch time)
	// in its last response; 0 with UPnP IGD, which has none.
	Epoch uint32
	// GoodUntil is when the mapping expires if not renewed, and RenewAt
	// when it will be renewed (NAT-PMP and UPnP: half the lifetime; PCP:
	// between 1/2 and 5/8 of it). Both are zero when there is no mapping
	// and for a permanent UPnP mapping.
	GoodUntil, RenewAt time.Time
	// Public says there is no NAT to ask: the host's address is public,
	// or the gateway did not answer NAT-PMP (Err is then a
	// *NoNATPMPError). External is the host's address and the internal
	// port.
	Public bool
	// DoubleNAT says External's address is itself private or shared
	// (100.64/10), so another NAT is probably in front of it and the
	// mapping unreachable from the internet (RFC 6281 §4.4).
	DoubleNAT bool
	// Gateway is the gateway asked (invalid if none was found).
	Gateway netip.Addr
	// Err, when not nil, says why this is not a NAT-PMP mapping: a
	// *NoNATPMPError (with Public set), a *ResultError (e.g. result 3,
	// network failure: a double NAT, see IsDoubleNAT), an error saying
	// that the gateway's answer was malformed ("bad answer"), a socket
	// error, or the failure to find the gateway or local address. It is
	// nil for NAT-PMP mappings and for hosts with a public address.
	Err error
	// Reboot says the gateway lost its state (a reboot, by the epoch
	// check) since the Mapping before: it forgot every connection through
	// it too, so long-lived ones must be made again.
	Reboot bool
}

// Valid reports whether m.External is usable: a NAT-PMP mapping or a
// Public one.
func (m Mapping) Valid() bool { return m.External.IsValid() }

// String describes m in one line, for logs and status output.
func (m Mapping) String() string {
	why := strings.TrimPrefix(errString(m.Err), "portmap: ")
	switch {
	case m.Public && m.Err != nil:
		return fmt.Sprintf("public %v (%s)", m.External, why)
	case m.Public:
		return fmt.Sprintf("public %v", m.External)
	case m.Valid():
		s := fmt.Sprintf("%v -> :%d via %v (%v) for %v", m.External, m.Internal, m.Gateway, m.Protocol, m.Lifetime)
		if m.Protocol == ProtoUPnP && m.Lifetime == 0 {
			s = fmt.Sprintf("%v -> :%d via %v (%v, permanent)", m.External, m.Internal, m.Gateway, m.Protocol)
		}
		if m.DoubleNAT {
			s += " (double NAT?)"
		}
		return s
	case IsDoubleNAT(m.Err):
		return fmt.Sprintf("no mapping: gateway %v has no external address (%s): probably a double NAT (RFC 6281 §4.4)", m.Gateway, why)
	case m.Err != nil:
		return fmt.Sprintf("no mapping (%s)", why)
	}
	return "no mapping"
}

// same reports whether a and b say the same thing to a publisher: the
// fields that make a Change.
func same(a, b Mapping) bool {
	return a.External == b.External && a.Public == b.Public && a.DoubleNAT == b.DoubleNAT && a.Protocol == b.Protocol &&
		a.Gateway == b.Gateway && errString(a.Err) == errString(b.Err)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Client keeps one mapping. Make it with New and start it with Run.
type Client struct {
	cfg            Config
	lifetime       time.Duration // whole seconds
	announceAddr   netip.AddrPort
	retryMin       time.Duration
	retryMax       time.Duration
	stateLossDelay time.Duration // ≤ 0: none
	order          []Protocol
	upnpCheck      time.Duration
	pcpIRT         time.Duration // RFC 6887's IRT; shorter in tests
	ssdpAddr       netip.AddrPort

	// discoverIGD finds the gateway's UPnP IGD service: discoverIGD
	// (SSDP), or a fake router in tests.
	discoverIGD func(ctx context.Context, gw netip.Addr) (*igdService, error)

	changes   chan Mapping  // capacity 1, latest wins; closed when Run returns
	refresh   chan struct{} // capacity 1
	announced chan struct{} // capacity 1
	running   atomic.Bool

	// newRequester returns the requester for a gateway: go-nat-pmp's,
	// with cfg.RequestTimeout.
	newRequester func(gw netip.Addr) requester
	// checkDone, if set (by tests), is called by Run after every check.
	checkDone func()

	mu sync.Mutex // guards following
	// current is the latest Mapping (zero before the first check).
	current Mapping
	// answers counts the mappings the gateway granted (the first, each
	// renewal, each re-creation); reboots, the times it had lost them.
	answers, reboots uint64
	// gateway is the gateway of the latest check, for the announcement
	// listener's source check.
	gateway netip.Addr
	// cancelCheck, when not nil, cancels the check in progress.
	cancelCheck context.CancelFunc
	// announceBound is the announcement socket's address once bound,
	// ssdpBound the SSDP socket's.
	announceBound, ssdpBound netip.AddrPort
	// upnpLocation is the description URL of the UPnP IGD that holds
	// the mapping ("" if none does); upnpBoot the gateway's last
	// BOOTID.UPNP.ORG; upnpNotified, when not nil, a new description URL
	// learned from a NOTIFY, for Run's next check.
	upnpLocation string
	upnpBoot     string
	upnpNotified *url.URL
	// announcedExt is the external address of the last NAT-PMP
	// announcement, for a PCP check (see checkPCP).
	announcedExt netip.Addr
	// pmpAnnounced (capacity 1) is signalled with each NAT-PMP
	// announcement, for a PCP check waiting after an ANNOUNCE.
	pmpAnnounced chan struct{}
}

// New returns a Client for cfg. It panics if cfg.InternalPort is 0.
func New(cfg Config) *Client {
	if cfg.InternalPort == 0 {
		panic("portmap: Config.InternalPort is required")
	}
	c := &Client{
		cfg:            cfg,
		announceAddr:   cfg.AnnounceAddr,
		retryMin:       cfg.RetryMin,
		retryMax:       cfg.RetryMax,
		stateLossDelay: cfg.StateLossDelay,
		changes:        make(chan Mapping, 1),
		refresh:        make(chan struct{}, 1),
		announced:      make(chan struct{}, 1),
		pmpAnnounced:   make(chan struct{}, 1),
	}
	lt := cfg.Lifetime
	if lt == 0 {
		lt = DefaultLifetime
	}
	c.lifetime = min(max(lt/time.Second, 1), maxLifetimeSeconds) * time.Second
	if !c.announceAddr.IsValid() {
		c.announceAddr = DefaultAnnounceAddr
	}
	timeout := max(cfg.RequestTimeout, 0)
	c.newRequester = func(gw netip.Addr) requester { return newPMPGateway(gw, timeout) }
	c.order = DefaultOrder
	if cfg.Protocols != nil {
		c.order = nil
		for _, p := range cfg.Protocols {
			if p != ProtoNone && !slices.Contains(c.order, p) {
				c.order = append(c.order, p)
			}
		}
		if len(c.order) == 0 {
			panic("portmap: Config.Protocols names no protocol")
		}
	}
	c.upnpCheck = cfg.UPnPCheck
	if c.upnpCheck <= 0 {
		c.upnpCheck = DefaultUPnPCheck
	}
	c.pcpIRT = pcpIRT
	c.ssdpAddr = cfg.SSDPAddr
	if !c.ssdpAddr.IsValid() {
		c.ssdpAddr = DefaultSSDPAddr
	}
	c.discoverIGD = discoverIGD
	if c.retryMin <= 0 {
		c.retryMin = defaultRetryMin
	}
	if c.retryMax <= 0 {
		c.retryMax = defaultRetryMax
	}
	c.retryMax = max(c.retryMax, c.retryMin)
	if c.stateLossDelay == 0 {
		c.stateLossDelay = defaultStateLossDelay
	}
	if c.cfg.Logf == nil {
		c.cfg.Logf = log.Printf
	}
	if c.cfg.Now == nil {
		c.cfg.Now = time.Now
	}
	if c.cfg.Gateway == nil {
		c.cfg.Gateway = DefaultGateway
	}
	if c.cfg.LocalAddr == nil {
		gateway := c.cfg.Gateway
		c.cfg.LocalAddr = func() (netip.Addr, error) {
			gw, err := gateway()
			if err != nil {
				return netip.Addr{}, err
			}
			return localAddrToward(gw)
		}
	}
	return c
}

func (c *Client) logf(format string, args ...any) { c.cfg.Logf(format, args...) }
func (c *Client) now() time.Time                  { return c.cfg.Now() }

// Changes returns the channel on which Run sends the Mapping after every
// change: of External (address or port), of Public, DoubleNAT, Gateway or
// Err, and after a NAT reboot even if the recreated mapping looks the
// same. Plain renewals send nothing. The channel holds one value: if the
// reader is slow, a newer Mapping replaces an unread one, so the reader
// always ends up with the latest and Run never waits. It is closed when
// Run returns.
func (c *Client) Changes() <-chan Mapping { return c.changes }

// Counts returns how many mappings the gateway granted (the first one,
// renewals and re-creations) and how many times it was found to have lost
// them (a reboot).
func (c *Client) Counts() (granted, reboots uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.answers, c.reboots
}

// Current returns the latest Mapping and whether it is usable
// (Mapping.Valid). Before Run's first check, and once Run has returned,
// it returns a zero Mapping and false.
func (c *Client) Current() (Mapping, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current, c.current.Valid()
}

// Refresh asks Run to check again at once: to be called when the host's
// addresses or routes change. It forgets that the gateway had no NAT-PMP
// and the failure back-off, and cancels a check in progress (which may be
// talking to the old gateway). The cancelled check's request goes on in
// the background until answered or timed out, and the next request to
// the same gateway waits for it (one request at a time per gateway,
// RFC 6886 §3.1); a new gateway is asked at once. An SSDP search for a
// UPnP IGD in progress is not cancelled (it takes 2 s, and the next
// check uses what it found, if the gateway is the same). It never blocks;
// several calls before Run gets to them make one check.
func (c *Client) Refresh() {
	select {
	case c.refresh <- struct{}{}:
	default:
	}
	c.mu.Lock()
	cancel := c.cancelCheck
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Run keeps the mapping until ctx is done, then deletes it from the
// gateway (RFC 6886 §3.4: a request with lifetime 0, sent twice at most)
// unless it has expired anyway, closes Changes, and returns nil. A
// request in progress when ctx ends is abandoned at once (it finishes on
// its own, within Config.RequestTimeout, in the background); the deletion
// waits for it up to 2 s, so Run returns within about 3 s. It returns an
// error at once only if called a second time.
//
// Run never fails for network reasons. No NAT-PMP answer (every
// retransmission unanswered, or ICMP port unreachable) gives a Public
// Mapping with the host's address and a *NoNATPMPError in Err; a result
// code gives a Mapping with no External and a *ResultError in Err
// (IsDoubleNAT for result 3, which is also logged as a probable double
// NAT); a malformed answer gives a Mapping with no External and an error
// in Err; either way Run tries again with back-off, and at once after
// Refresh or an announcement. A renewal that gets no answer, or a
// malformed one, keeps the mapping until it expires, retrying meanwhile.
//
// Run listens for announcements on Config.AnnounceAddr. If it cannot bind
// that address it logs once and carries on without (it tries again after
// Refresh); the next renewal then notices what an announcement would
// have said.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("portmap: Run called twice")
	}
	defer close(c.changes)
	ann := c.listen()
	defer func() { ann.close() }()
	var ssdp *announceListener
	if slices.Contains(c.order, ProtoUPnP) {
		ssdp = c.listenSSDP()
	}
	defer func() { ssdp.close() }()

	st := &runState{runCtx: ctx}
	timer := time.NewTimer(0)
	defer timer.Stop()
	why := whyStart
	for {
		select {
		case <-ctx.Done():
			c.release(st)
			return nil
		case <-c.refresh:
			why = whyRefresh
			st.backoff = 0
			if ann == nil {
				ann = c.listen()
			}
			if slices.Contains(c.order, ProtoUPnP) {
				// Join the SSDP group on the interfaces there are now.
				ssdp.close()
				ssdp = c.listenSSDP()
			}
		case <-c.announced:
			why = whyAnnouncement
			st.backoff = 0
		case <-timer.C:
		}
		if ctx.Err() != nil { // select chose another ready case
			c.release(st)
			return nil
		}
		cctx, cancel := context.WithCancel(ctx)
		c.mu.Lock()
		c.cancelCheck = cancel
		c.mu.Unlock()
		wait := c.check(cctx, st, why)
		c.mu.Lock()
		c.cancelCheck = nil
		c.mu.Unlock()
		cancel()
		if c.checkDone != nil {
			c.checkDone()
		}
		timer.Reset(wait)
		why = whyTimer
	}
}

// publish makes m the current Mapping and, if it differs from the last
// one in a way that matters (or reboot is set), sends it on Changes.
func (c *Client) publish(st *runState, m Mapping, reboot bool) {
	m.Reboot = reboot
	changed := !st.published || reboot || !same(st.last, m)
	st.last, st.published = m, true
	if changed {
		if reboot {
			c.logf("portmap: gateway %v lost its mappings; now %v", m.Gateway, m)
		} else {
			c.logf("portmap: %v", m)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current = m
	if m.Valid() && !m.Public {
		c.answers++
	}
	if reboot {
		c.reboots++
	}
	if !changed {
		return
	}
	// Run is the only sender, so after the drain the send succeeds: a
	// newer Mapping replaces an unread one, and Run never waits.
	select {
	case <-c.changes:
	default:
	}
	select {
	case c.changes <- m:
	default:
	}
}
