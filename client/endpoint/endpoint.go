// Package endpoint asks the server which address and port it sees a UDP
// socket's packets come from: the server-observed endpoint (the wire
// format is plugin/pkg/endpoint's). Behind a NAT with no mapping protocol
// (carrier-grade NAT, NAT behind NAT), a host asks from its tunnel's own
// UDP port and publishes the answer: peers that send there reach it as
// long as the NAT keeps the mapping (hole punching keeps it used).
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

// Probe sends the question, signed with key (the user's, whose name is the
// user's domain), from conn to server, the server's UDP update address,
// and returns the endpoint the server saw. It reads conn until the
// answer comes (other packets are ignored), so conn must not be read by
// anyone else meanwhile.
func Probe(ctx context.Context, conn net.PacketConn, server netip.AddrPort, key keyfile.Key) (netip.AddrPort, error) {
	q := endpoint.Query(key.Name)
	q.Id = dns.Id()
	q.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
	b, mac, err := dns.TsigGenerateWithProvider(q, tsigauth.HMAC(key.Secret), "", false)
	if err != nil {
		return netip.AddrPort{}, err
	}
	to := net.UDPAddrFromAddrPort(server)
	buf := make([]byte, 4096)
	for try := 0; try < 3; try++ {
		if _, err := conn.WriteTo(b, to); err != nil {
			return netip.AddrPort{}, err
		}
		deadline := time.Now().Add(resend)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		conn.SetReadDeadline(deadline)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return netip.AddrPort{}, err
			}
			if ap, ok := from.(*net.UDPAddr); !ok || ap.AddrPort().Addr().Unmap() != server.Addr().Unmap() || ap.AddrPort().Port() != server.Port() {
				continue
			}
			ep, ok, err := answer(buf[:n], q.Id, key, mac)
			if ok {
				conn.SetReadDeadline(time.Time{})
				return ep, err
			}
		}
		if ctx.Err() != nil {
			return netip.AddrPort{}, ctx.Err()
		}
	}
	conn.SetReadDeadline(time.Time{})
	return netip.AddrPort{}, fmt.Errorf("endpoint: no answer from %v", server)
}

// answer reads a reply: ok is false for a packet that is not the answer
// to question id (read on); an answer that is not signed with key over
// the question's MAC, or holds no endpoint, is an error.
func answer(raw []byte, id uint16, key keyfile.Key, mac string) (netip.AddrPort, bool, error) {
	r := new(dns.Msg)
	if r.Unpack(raw) != nil || !r.Response || r.Id != id {
		return netip.AddrPort{}, false, nil
	}
	if err := tsigauth.VerifyReply(raw, key.Secret, mac); err != nil {
		return netip.AddrPort{}, true, fmt.Errorf("endpoint: the answer's signature: %w", err)
	}
	if sig := r.IsTsig(); sig != nil && sig.Error != 0 {
		return netip.AddrPort{}, true, fmt.Errorf("endpoint: TSIG %s", dns.RcodeToString[int(sig.Error)])
	}
	ep, err := endpoint.Parse(r, key.Name)
	return ep, true, err
}
