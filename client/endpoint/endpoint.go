// Package endpoint asks the server which address and port it sees a UDP
// socket's packets come from: the server-observed endpoint (the wire
// format is plugin/pkg/endpoint's). Behind a NAT with no mapping protocol
// (carrier-grade NAT, NAT behind NAT), a host asks from its tunnel's own
// UDP port and publishes the answer: peers that send there reach it as
// long as the NAT keeps the mapping, and the tunnel's packets to each peer
// open its filter for that peer (hole punching).
//
// Asking two ports of the server tells whether the NAT's mapping depends
// on the destination (Classify): then no port the server sees is the one
// a peer would have to send to, and there is no direct path.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/endpoint"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

// resend is how long to wait for an answer before asking again; a probe
// asks three times.
var resend = time.Second

// Exchanger sends one datagram to addr and returns the first datagram
// from there that accept takes: the tunnel's socket
// (tunnel.Tunnel.Exchange) or any UDP socket (Socket).
type Exchanger interface {
	Exchange(ctx context.Context, addr netip.AddrPort, msg []byte, accept func([]byte) bool) ([]byte, error)
}

// Socket is an Exchanger on a UDP socket that nothing else reads.
type Socket struct{ Conn net.PacketConn }

// Exchange implements Exchanger.
func (s Socket) Exchange(ctx context.Context, addr netip.AddrPort, msg []byte, accept func([]byte) bool) ([]byte, error) {
	if _, err := s.Conn.WriteTo(msg, net.UDPAddrFromAddrPort(addr)); err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		s.Conn.SetReadDeadline(d)
		defer s.Conn.SetReadDeadline(time.Time{})
	}
	buf := make([]byte, 4096)
	for {
		n, from, err := s.Conn.ReadFrom(buf)
		if err != nil {
			return nil, err
		}
		ap, ok := from.(*net.UDPAddr)
		if ok && ap.AddrPort().Addr().Unmap() == addr.Addr().Unmap() && ap.AddrPort().Port() == addr.Port() && (accept == nil || accept(buf[:n])) {
			return buf[:n], nil
		}
	}
}

// Probe asks server (a UDP address of the server that answers endpoint
// questions: its update listener, or its query port) through x for the
// endpoint it sees, signing with key, the user's key. Only an answer
// signed with key is taken.
func Probe(ctx context.Context, x Exchanger, server netip.AddrPort, key keyfile.Key) (netip.AddrPort, error) {
	q := endpoint.Query(key.Name)
	q.Id = dns.Id()
	q.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
	b, mac, err := dns.TsigGenerateWithProvider(q, tsigauth.HMAC(key.Secret), "", false)
	if err != nil {
		return netip.AddrPort{}, err
	}
	last := fmt.Errorf("endpoint: no answer from %v", server)
	for try := 0; try < 3 && ctx.Err() == nil; try++ {
		tctx, cancel := context.WithTimeout(ctx, resend)
		raw, err := x.Exchange(tctx, server, b, func(raw []byte) bool { return isReply(raw, q.Id) })
		cancel()
		if err == nil {
			return answer(raw, key, mac)
		}
	}
	if ctx.Err() != nil {
		return netip.AddrPort{}, ctx.Err()
	}
	return netip.AddrPort{}, last
}

// isReply reports whether raw is a DNS response to question id: what
// answer is asked to read (other datagrams from the server are skipped).
func isReply(raw []byte, id uint16) bool {
	r := new(dns.Msg)
	return r.Unpack(raw) == nil && r.Response && r.Id == id
}

// answer reads a reply: one not signed with key over the question's MAC,
// or one without an endpoint, is an error.
func answer(raw []byte, key keyfile.Key, mac string) (netip.AddrPort, error) {
	if err := tsigauth.VerifyReply(raw, key.Secret, mac); err != nil {
		return netip.AddrPort{}, fmt.Errorf("endpoint: the answer's signature: %w", err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(raw); err != nil {
		return netip.AddrPort{}, err
	}
	if sig := r.IsTsig(); sig != nil && sig.Error != 0 {
		return netip.AddrPort{}, fmt.Errorf("endpoint: TSIG %s", dns.RcodeToString[int(sig.Error)])
	}
	return endpoint.Parse(r, key.Name)
}

// Mapping is what a NAT's mapping is like, as two ports of the server see
// it.
type Mapping int

const (
	// Unknown: only one port answered.
	Unknown Mapping = iota
	// Independent: both saw the same endpoint; a peer that sends there
	// reaches this host once the host has sent to the peer.
	Independent
	// Dependent: the NAT gave each destination a port of its own (a
	// "symmetric" NAT); no endpoint the server sees is one a peer can
	// use.
	Dependent
)

func (m Mapping) String() string {
	switch m {
	case Independent:
		return "independent of the destination"
	case Dependent:
		return "dependent on the destination"
	}
	return "unknown"
}

// ErrNoAnswer says neither server port answered.
var ErrNoAnswer = errors.New("endpoint: the server answered no endpoint question")

// Classify probes the server addresses (up to two ports of the server)
// and returns the first endpoint seen and what the NAT's mapping is like:
// Unknown when fewer than two answered.
func Classify(ctx context.Context, x Exchanger, servers []netip.AddrPort, key keyfile.Key) (netip.AddrPort, Mapping, error) {
	var seen []netip.AddrPort
	var errs []error
	for _, srv := range servers[:min(2, len(servers))] {
		ep, err := Probe(ctx, x, srv, key)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		seen = append(seen, ep)
	}
	switch {
	case len(seen) == 0:
		return netip.AddrPort{}, Unknown, fmt.Errorf("%w: %v", ErrNoAnswer, errors.Join(errs...))
	case len(seen) == 1:
		return seen[0], Unknown, nil
	case seen[0] != seen[1]:
		return seen[0], Dependent, nil
	}
	return seen[0], Independent, nil
}
