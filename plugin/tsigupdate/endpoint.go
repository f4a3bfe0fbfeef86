package tsigupdate

import (
	"net"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/endpoint"
)

// serveEndpoint answers a host that asks, from its tunnel's UDP port,
// where the server saw the question come from (package endpoint): a host
// behind a NAT with no mapping protocol publishes that. Only a question
// over UDP, signed with the key of the user it names, is answered; the
// reply is signed like every other.
func (u *TsigUpdate) serveEndpoint(r *dns.Msg, user, key string, udp bool, remote net.Addr) *dns.Msg {
	from, ok := remote.(*net.UDPAddr)
	switch {
	case key == "":
		log.Debugf("unsigned endpoint question for %s refused", user)
		return new(dns.Msg).SetRcode(r, dns.RcodeRefused)
	case dns.CanonicalName(key) != user:
		log.Debugf("endpoint question for %s with key %s refused", user, key)
		return new(dns.Msg).SetRcode(r, dns.RcodeRefused)
	case !udp || !ok:
		// Over TCP the source port is the connection's, of no use to a
		// tunnel: the question must come from its UDP port.
		return new(dns.Msg).SetRcode(r, dns.RcodeRefused)
	}
	m := new(dns.Msg).SetReply(r)
	endpoint.Reply(m, r.Question[0].Name, from.AddrPort())
	return m
}
