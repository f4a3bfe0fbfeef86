package portmap

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"syscall"
	"time"

	natpmp "github.com/jackpal/go-nat-pmp"
)

// requester sends one gateway the three NAT-PMP requests the client
// makes. Only Run's goroutine calls it. Every method returns
//   - a *ResultError for a response with a result code other than success;
//   - a *NoNATPMPError for no answer at all, or an ICMP port unreachable;
//   - a *badAnswerError for an answer that is not the response asked for;
//   - ctx.Err() if ctx ended first;
//   - another error for a socket failure (no route, say).
type requester interface {
	// ExternalAddress asks for the gateway's external address (RFC 6886
	// §3.2) and returns it with the response's SSSoE.
	ExternalAddress(ctx context.Context) (ext netip.Addr, epoch uint32, err error)
	// Probe is ExternalAddress with a shorter timeout (pmpProbeTimeout),
	// for when another protocol is to be tried if NAT-PMP is silent.
	Probe(ctx context.Context) (ext netip.Addr, epoch uint32, err error)
	// Map asks for a UDP mapping of internal (§3.3), suggesting the
	// external port suggested, for lifetime (whole seconds). It returns
	// the external port and lifetime granted, and the response's SSSoE.
	Map(ctx context.Context, internal, suggested uint16, lifetime time.Duration) (ext uint16, granted time.Duration, epoch uint32, err error)
	// Delete deletes the UDP mapping of internal (§3.4: lifetime 0,
	// suggested port 0). It gives up after deleteTimeout, whatever the
	// request timeout.
	Delete(ctx context.Context, internal uint16) error
}

// Names of the requests, for ResultError.Op and error texts.
const (
	opNameExternal = "external address"
	opNameMap      = "map UDP"
	opNameDelete   = "delete UDP"
	opNameLookup   = "look up UDP"
)

// deleteTimeout is how long a deletion is retried: the first two waits of
// go-nat-pmp's schedule, 250 ms and 500 ms, so it is sent twice at most
// (RFC 6886 §3.4 lets a client give up after one or two sends).
const deleteTimeout = 750 * time.Millisecond

// pmpProbeTimeout bounds the first NAT-PMP request of a check when another
// protocol (UPnP IGD) is to be tried if NAT-PMP stays silent: sends at 0,
// 250 and 750 ms, given up at 2 s, instead of RFC 6886's 128 s.
const pmpProbeTimeout = 2 * time.Second

// maxLifetimeSeconds is the longest lifetime that can be asked for: the
// field has 32 bits, and go-nat-pmp takes it as an int.
const maxLifetimeSeconds = min(1<<32-1, math.MaxInt)

// pmpGateway is the requester for one gateway, on go-nat-pmp, which
// encodes the request, sends it from a fresh UDP socket connected to the
// gateway's port 5351, resends it at 250 ms doubling (9 sends, or until
// its timeout), takes the first datagram from the gateway as the answer,
// checks its version, result code, opcode and size, and decodes it.
//
// The library knows no context. Each call runs in a goroutine of its own,
// and the caller stops waiting for it when its ctx ends; the abandoned
// call goes on until it gets an answer or its timeout (Config's
// RequestTimeout, ~128 s by default), and its result is dropped. The
// goroutine holds busy for as long as the call runs, and the next request
// to the gateway waits for it: the gateway never has two requests from
// this client at once (RFC 6886 §3.1), even after a cancellation.
type pmpGateway struct {
	gw      netip.Addr
	client  *natpmp.Client // external address and mapping requests
	prober  *natpmp.Client // Probe: pmpProbeTimeout
	deleter *natpmp.Client // deletions: deleteTimeout
	busy    chan struct{}  // capacity 1: full while a library call runs
}

// newPMPGateway returns the requester for gw. A timeout of 0 means the
// library's own schedule, RFC 6886 §3.1's 9 sends over about 128 s.
//
// The library is not given a local address: the kernel picks the source
// toward the gateway, as it does for the tunnel, and the gateway maps
// that address.
func newPMPGateway(gw netip.Addr, timeout time.Duration) *pmpGateway {
	ip := net.IP(gw.AsSlice())
	probe := pmpProbeTimeout
	if timeout > 0 {
		probe = min(timeout, probe)
	}
	return &pmpGateway{
		gw:      gw,
		client:  natpmp.NewClientWithTimeout(ip, timeout),
		prober:  natpmp.NewClientWithTimeout(ip, probe),
		deleter: natpmp.NewClientWithTimeout(ip, deleteTimeout),
		busy:    make(chan struct{}, 1),
	}
}

func (g *pmpGateway) ExternalAddress(ctx context.Context) (netip.Addr, uint32, error) {
	r, err := call(ctx, g, opNameExternal, g.client.GetExternalAddress)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	// The library copies the address's bytes as they came (spec §9.1).
	return netip.AddrFrom4(r.ExternalIPAddress), r.SecondsSinceStartOfEpoc, nil
}

func (g *pmpGateway) Probe(ctx context.Context) (netip.Addr, uint32, error) {
	r, err := call(ctx, g, opNameExternal, g.prober.GetExternalAddress)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	return netip.AddrFrom4(r.ExternalIPAddress), r.SecondsSinceStartOfEpoc, nil
}

func (g *pmpGateway) Map(ctx context.Context, internal, suggested uint16, lifetime time.Duration) (uint16, time.Duration, uint32, error) {
	secs := min(max(int64(lifetime/time.Second), 0), maxLifetimeSeconds)
	r, err := call(ctx, g, opNameMap, func() (*natpmp.AddPortMappingResult, error) {
		return g.client.AddPortMapping("udp", int(internal), int(suggested), int(secs))
	})
	if err != nil {
		return 0, 0, 0, err
	}
	// The library checks the opcode but not the port: NAT-PMP has no
	// transaction IDs, and the internal port is what tells answers apart
	// (RFC 6886 §3.1).
	if r.InternalPort != internal {
		return 0, 0, 0, &badAnswerError{Op: opNameMap, Gateway: g.gw,
			Err: fmt.Errorf("a mapping of internal port %d, not %d", r.InternalPort, internal)}
	}
	return r.MappedExternalPort, time.Duration(r.PortMappingLifetimeInSeconds) * time.Second, r.SecondsSinceStartOfEpoc, nil
}

func (g *pmpGateway) Delete(ctx context.Context, internal uint16) error {
	_, err := call(ctx, g, opNameDelete, func() (*natpmp.AddPortMappingResult, error) {
		return g.deleter.AddPortMapping("udp", int(internal), 0, 0)
	})
	return err
}

// call runs f, a go-nat-pmp call, in a goroutine that holds g.busy, once
// g.busy is free, and waits for it or for ctx. It returns f's result, with
// f's error turned into this package's by g.libError.
func call[T any](ctx context.Context, g *pmpGateway, op string, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	select {
	case g.busy <- struct{}{}:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-g.busy }()
		v, err := f()
		done <- result{v, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		select {
		case r = <-done: // finished at the same moment: use it
		default:
			return zero, ctx.Err()
		}
	}
	if r.err != nil {
		return zero, g.libError(op, r.err)
	}
	return r.v, nil
}

// go-nat-pmp (v1.1.0) reports everything as error text. These are the
// texts libError relies on; TestLibraryErrorText pins them, so that a
// version that words them differently fails that test instead of turning
// result codes into untyped errors and silence into a failure.
const libTimeoutText = "Timed out trying to contact gateway"

// libResultText matches the library's text for a result code:
// "Non-zero result code N", with " (description)" for codes 1 to 5.
var libResultText = regexp.MustCompile(`^Non-zero result code ([0-9]{1,5})(?: \(.*\))?$`)

// libError turns an error from a go-nat-pmp call for op into one of this
// package's (see requester).
func (g *pmpGateway) libError(op string, err error) error {
	// An ICMP port unreachable: the library returns the socket's error.
	if errors.Is(err, syscall.ECONNREFUSED) {
		return &NoNATPMPError{Gateway: g.gw, Err: err}
	}
	msg := err.Error()
	if msg == libTimeoutText {
		return &NoNATPMPError{Gateway: g.gw, Err: ErrNoAnswer}
	}
	if m := libResultText.FindStringSubmatch(msg); m != nil {
		if code, perr := strconv.ParseUint(m[1], 10, 16); perr == nil && code != uint64(ResultSuccess) {
			return &ResultError{Op: op, Code: ResultCode(code)}
		}
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return fmt.Errorf("portmap: NAT-PMP %s to %v: %w", op, g.gw, err)
	}
	// What is left are the library's checks of the answer: size, version,
	// opcode.
	return &badAnswerError{Op: op, Gateway: g.gw, Err: err}
}

// badAnswerError is an answer from the gateway that is not a response to
// the request: too short or too long, another version (PCP), another
// opcode, another internal port. go-nat-pmp takes the first datagram from
// the gateway as the answer, so such a datagram fails the request (where
// RFC 6886 §3.1 would drop it and keep waiting). It is treated like no
// answer, except that a host with no mapping is not taken to be on a
// public network: something does answer on port 5351.
type badAnswerError struct {
	Proto   Protocol // ProtoNone means NAT-PMP
	Op      string
	Gateway netip.Addr
	Err     error
}

func (e *badAnswerError) Error() string {
	p := e.Proto
	if p == ProtoNone {
		p = ProtoNATPMP
	}
	return fmt.Sprintf("portmap: %v %s: bad answer from %v: %v", p, e.Op, e.Gateway, e.Err)
}

func (e *badAnswerError) Unwrap() error { return e.Err }
