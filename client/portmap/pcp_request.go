package portmap

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// RFC 6887 §8.1.1's retransmission constants: the initial and the
// maximum retransmission time.
const (
	pcpIRT = 3 * time.Second
	pcpMRT = 1024 * time.Second
)

const (
	// pcpProbeMRD bounds a PCP request while the gateway is not known to
	// speak PCP (RFC 6887 §8.1.1 leaves MRD to the client): two sends,
	// at 0 and after about 3 s, then the next protocol is tried. A
	// NAT-PMP gateway answers at once (Unsupported Version), so the wait
	// is only paid where port 5351 is silent.
	pcpProbeMRD = 5 * time.Second
	// pcpDeleteMRD bounds a deletion: one send, and a second of waiting.
	pcpDeleteMRD = time.Second
)

// pcpGateway asks one gateway for MAP mappings. Its nonce is drawn once
// and used for every request about the mapping (RFC 6887 §11.1): the
// first, its retransmissions, renewals, its recreation after the
// gateway lost it, and its deletion, so that the gateway knows them all
// for one client's. Only Run's goroutine uses it, so the gateway has one
// request from this client at a time.
type pcpGateway struct {
	gw    netip.Addr
	port  uint16 // DefaultServerPort
	nonce [pcpNonceLen]byte
	irt   time.Duration // pcpIRT; shorter in tests
	// local, if valid, is the address requests are sent from, and so
	// the internal address mapped; else the kernel picks the source.
	local netip.Addr
}

func newPCPGateway(gw netip.Addr, irt time.Duration) *pcpGateway {
	g := &pcpGateway{gw: gw, port: DefaultServerPort, irt: irt}
	rand.Read(g.nonce[:])
	return g
}

// pcpResult is what a MAP response granted.
type pcpResult struct {
	ext      netip.AddrPort
	lifetime time.Duration
	epoch    uint32
	hasEpoch bool // a response came (also with a result code)
}

// Map sends a MAP request for UDP port internal, suggesting ext (the
// zero AddrPort: no preference), for lifetime (whole seconds; 0 deletes),
// and waits for the response with our nonce, protocol and internal port.
// It sends from a fresh UDP socket connected to the gateway, so that
// only the gateway's datagrams are read and an ICMP port unreachable is
// seen, and puts that socket's address in the request (the gateway
// compares it with the source: ADDRESS_MISMATCH).
//
// It retransmits per RFC 6887 §8.1.1: after RT = (1+RAND)·IRT, then
// RT = (1+RAND)·min(2·RTprev, MRT), RAND uniform in [-0.1, +0.1], until
// mrd has passed (mrd ≤ 0: until ctx ends). Datagrams that are no answer
// to the request (malformed, another opcode, nonce or port) are dropped
// and the wait goes on.
//
// Errors: a *NoNATPMPError (Protocols [PCP]) for no answer, an ICMP port
// unreachable, or a gateway that does not speak PCP version 2 (NAT-PMP's
// or PCP's Unsupported Version: Err is then errPCPVersion); a
// *PCPResultError for another result code (the pcpResult still carries
// the epoch); a *badAnswerError if only datagrams that are no answer
// came; ctx.Err(); or a socket error.
func (g *pcpGateway) Map(ctx context.Context, op string, internal uint16, ext netip.AddrPort, lifetime time.Duration, mrd time.Duration) (pcpResult, error) {
	if err := ctx.Err(); err != nil {
		return pcpResult{}, err
	}
	var laddr *net.UDPAddr
	if g.local.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(g.local, 0))
	}
	network := "udp4"
	if g.gw.Is6() {
		network = "udp6"
	}
	conn, err := net.DialUDP(network, laddr, net.UDPAddrFromAddrPort(netip.AddrPortFrom(g.gw, g.port)))
	if err != nil {
		return pcpResult{}, fmt.Errorf("portmap: PCP %s to %v: %w", op, g.gw, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	client := conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	secs := uint32(min(max(int64(lifetime/time.Second), 0), maxLifetimeSeconds))
	req := pcpMapRequest(client, g.nonce, internal, ext.Port(), ext.Addr(), secs)

	start := time.Now()
	var giveUp time.Time
	if mrd > 0 {
		giveUp = start.Add(mrd)
	}
	jitter := func(d time.Duration) time.Duration {
		return time.Duration(float64(d) * (0.9 + 0.2*mrand.Float64()))
	}
	rt := jitter(g.irt)
	var bad error
	buf := make([]byte, pcpMaxLen+4)
	for {
		if _, err := conn.Write(req); err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return pcpResult{}, g.absent(err)
			}
			if ctx.Err() != nil {
				return pcpResult{}, ctx.Err()
			}
			return pcpResult{}, fmt.Errorf("portmap: PCP %s to %v: %w", op, g.gw, err)
		}
		next := time.Now().Add(rt)
		if !giveUp.IsZero() && next.After(giveUp) {
			next = giveUp
		}
		conn.SetReadDeadline(next)
		for {
			n, err := conn.Read(buf)
			if ctx.Err() != nil {
				return pcpResult{}, ctx.Err()
			}
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				if errors.Is(err, syscall.ECONNREFUSED) {
					return pcpResult{}, g.absent(err)
				}
				return pcpResult{}, fmt.Errorf("portmap: PCP %s to %v: %w", op, g.gw, err)
			}
			r, err := parsePCPResponse(buf[:n])
			if errors.Is(err, errPCPVersion) {
				return pcpResult{}, g.absent(errPCPVersion)
			}
			if err == nil && (r.opcode != pcpOpMap || r.nonce != g.nonce || r.protocol != protoUDP || r.internal != internal) {
				err = fmt.Errorf("a response to another request (opcode %d, protocol %d, internal port %d, nonce %s)",
					r.opcode, r.protocol, r.internal, map[bool]string{true: "ours", false: "not ours"}[r.nonce == g.nonce])
			}
			if err != nil {
				bad = err // dropped: keep waiting (RFC 6887 §8.3)
				continue
			}
			res := pcpResult{epoch: r.epoch, hasEpoch: true, lifetime: time.Duration(r.lifetime) * time.Second}
			if r.result != PCPSuccess {
				return res, &PCPResultError{Op: op, Code: r.result, Lifetime: res.lifetime}
			}
			res.ext = netip.AddrPortFrom(r.extAddr, r.extPort)
			return res, nil
		}
		if !giveUp.IsZero() && !time.Now().Before(giveUp) {
			if bad != nil {
				return pcpResult{}, &badAnswerError{Proto: ProtoPCP, Op: op, Gateway: g.gw, Err: bad}
			}
			return pcpResult{}, g.absent(ErrNoAnswer)
		}
		rt = jitter(min(2*rt, pcpMRT))
	}
}

func (g *pcpGateway) absent(err error) error {
	return &NoNATPMPError{Gateway: g.gw, Err: err, Protocols: []Protocol{ProtoPCP}}
}
