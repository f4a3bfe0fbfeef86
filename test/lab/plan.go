package lab

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
)

// The address plan. The internet is 23.0.0.0/8: ordinary allocated
// unicast space, outside every IANA special-purpose range, so miniupnpd
// accepts it as a public WAN address. No packet of it leaves the lab: inet
// has no default route and no link to the machine's own namespace, so the
// real owners of those addresses are never reached (or shadowed, except
// inside the lab). Every home uses 192.168.1.0/24, as real home routers do,
// so two hosts in different homes may see the same private subnet; host
// numbers are unique in a lab, so their addresses still differ.
var (
	serverLink = netip.MustParsePrefix("23.0.0.0/24") // inet .1, server .53
	serverAddr = netip.MustParseAddr("23.0.0.53")
	homeLAN    = netip.MustParsePrefix("192.168.1.0/24")
)

// With Options.IPv6, the documentation prefix 2001:db8::/32 (RFC 3849):
// the server's link is 2001:db8::/64 (inet ::1, server ::53); a network
// with plan v6 = N has the uplink 2001:db8:N::/64 (inet ::1, router ::2)
// and the LAN 2001:db8:N:1::/64 (router ::1, host NUM at ::NUM in hex,
// as its IPv4 address's last octet is NUM). Nothing outside the lab
// routes it, and no packet leaves the lab anyway.
func v6Prefix(n, sub int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(n >> 8), byte(n), byte(sub >> 8), byte(sub)}), 64)
}

// nth6 returns the n-th address of an IPv6 /64.
func nth6(p netip.Prefix, n int) netip.Addr {
	b := p.Masked().Addr().As16()
	b[14], b[15] = byte(n>>8), byte(n)
	return netip.AddrFrom16(b)
}

// networkPlan is one network with its router and uplink.
type networkPlan struct {
	name, router string
	lan          netip.Prefix
	uplink       string       // Internet or a network name
	link         netip.Prefix // for an Internet uplink: inet .1, router .2
	nat, natpmp  bool
	double       bool // only with Options.DoubleNAT
	double2      bool // only with Options.DoubleNATBoth
	routed       bool // only with Options.RoutedPrivate
	v6           int  // with Options.IPv6: the network is 2001:db8:V6:1::/64
}

var networkPlans = []networkPlan{
	{name: "homeA", router: "routerA", lan: homeLAN, uplink: Internet, link: netip.MustParsePrefix("23.1.1.0/24"), nat: true, natpmp: true, v6: 1},
	{name: "homeB", router: "routerB", lan: homeLAN, uplink: Internet, link: netip.MustParsePrefix("23.2.2.0/24"), nat: true, natpmp: true, v6: 2},
	// The cafe routes its public /24 without NAT and without NAT-PMP.
	{name: "cafe", router: "cafe", lan: netip.MustParsePrefix("23.3.3.0/24"), uplink: Internet, link: netip.MustParsePrefix("23.3.0.0/24"), v6: 3},
	// A carrier-grade NAT (shared address space, RFC 6598) without NAT-PMP,
	// and a home router with NAT-PMP behind it: RFC 6281 §4.4.
	{name: "carrier", router: "isp", lan: netip.MustParsePrefix("100.64.0.0/24"), uplink: Internet, link: netip.MustParsePrefix("23.4.4.0/24"), nat: true, double: true},
	{name: "homeC", router: "routerC", lan: homeLAN, uplink: "carrier", nat: true, natpmp: true, double: true},
	// A routed private network (RFC 6281 §4.4.2): an office whose router
	// routes a private subnet, without NAT or a mapping protocol, to the
	// carrier, which NATs it.
	{name: "office", router: "officeR", lan: netip.MustParsePrefix("10.20.0.0/24"), uplink: "carrier", routed: true},
	// A second carrier and home behind it, so that both hosts of a test
	// can be behind two NATs.
	{name: "carrier2", router: "isp2", lan: netip.MustParsePrefix("100.64.1.0/24"), uplink: Internet, link: netip.MustParsePrefix("23.5.5.0/24"), nat: true, double2: true},
	{name: "homeD", router: "routerD", lan: homeLAN, uplink: "carrier2", nat: true, natpmp: true, double2: true},
}

var hostName = regexp.MustCompile(`^[A-Za-z0-9]{1,12}$`)

// plan fills in a Lab's description from the options; build makes it.
func plan(prefix, dir string, opts Options) (*Lab, error) {
	l := &Lab{
		Prefix:   prefix,
		Dir:      dir,
		Networks: map[string]*Network{},
		Routers:  map[string]*Router{},
		Servers:  map[string]*Server{},
		Hosts:    map[string]*Host{},
		procs:    map[string]*proc{},
	}
	l.Namespaces = append(l.Namespaces, "inet", "server")
	l.Servers["server"] = &Server{
		Name:   "server",
		Addr:   netip.PrefixFrom(serverAddr, serverLink.Bits()),
		Upper:  serverLink.Addr().Next(),
		InetIf: "server",
	}
	if opts.IPv6 {
		srv := l.Servers["server"]
		link := v6Prefix(0, 0)
		srv.Addr6 = netip.PrefixFrom(nth6(link, 0x53), 64)
		srv.Upper6 = nth6(link, 1)
	}
	for i, p := range networkPlans {
		if p.double && !opts.DoubleNAT || p.double2 && !opts.DoubleNATBoth || p.routed && !opts.RoutedPrivate {
			continue
		}
		gw := p.lan.Addr().Next()
		l.Networks[p.name] = &Network{
			Name: p.name, Router: p.router, Subnet: p.lan, Gateway: gw,
			MAC:  fmt.Sprintf("02:b7:00:00:%02x:01", i+1),
			next: 2,
		}
		r := &Router{Name: p.router, LAN: p.name, Uplink: p.uplink, NAT: p.nat, NATPMP: p.natpmp, RandomPorts: p.nat && slices.Contains(opts.RandomPorts, p.router)}
		if p.natpmp {
			r.Protocols = DefaultNATProtocols
			if np, ok := opts.NATProtocols[p.router]; ok {
				r.Protocols = np
				r.NATPMP = np.Any()
			}
		}
		if p.uplink == Internet {
			r.Link = p.link
			r.Upper = p.link.Addr().Next()
			r.WAN = netip.PrefixFrom(r.Upper.Next(), p.link.Bits())
			r.InetIf = p.name
		} else {
			up := l.Networks[p.uplink]
			r.Link = up.Subnet
			r.Upper = up.Gateway
			r.WAN = netip.PrefixFrom(nthAddr(up.Subnet, up.next), up.Subnet.Bits())
			up.next++
		}
		if opts.IPv6 && p.v6 != 0 {
			n := l.Networks[p.name]
			n.Subnet6 = v6Prefix(p.v6, 1)
			n.Gateway6 = nth6(n.Subnet6, 1)
			link := v6Prefix(p.v6, 0)
			r.Upper6 = nth6(link, 1)
			r.WAN6 = netip.PrefixFrom(nth6(link, 2), 64)
		}
		l.Routers[p.router] = r
		l.Namespaces = append(l.Namespaces, p.router)
	}
	if opts.RoutedPrivate && !opts.DoubleNAT {
		return nil, fmt.Errorf("lab: Options.RoutedPrivate needs DoubleNAT: the office sits behind the carrier")
	}
	for _, name := range opts.RandomPorts {
		if r := l.Routers[name]; r == nil || !r.NAT {
			return nil, fmt.Errorf("lab: Options.RandomPorts: %q is not a NAT router of this lab", name)
		}
	}
	for name := range opts.NATProtocols {
		home := slices.ContainsFunc(networkPlans, func(p networkPlan) bool { return p.router == name && p.natpmp })
		if !home || l.Routers[name] == nil {
			return nil, fmt.Errorf("lab: Options.NATProtocols: %q is not a home router of this lab", name)
		}
	}
	hosts := opts.Hosts
	if hosts == nil {
		hosts = map[string]string{"hostA": "homeA", "hostB": "homeB"}
		if opts.DoubleNAT {
			hosts["hostC"] = "homeC"
		}
		if opts.DoubleNATBoth {
			hosts["hostD"] = "homeD"
		}
	}
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	sort.Strings(names)
	for i, h := range names {
		net := hosts[h]
		switch {
		case !hostName.MatchString(h):
			return nil, fmt.Errorf("lab: host name %q: use 1 to 12 letters and digits", h)
		case h == "inet" || l.Servers[h] != nil || l.Routers[h] != nil:
			return nil, fmt.Errorf("lab: host name %q is taken by a namespace of the lab", h)
		case l.Networks[net] == nil:
			return nil, fmt.Errorf("lab: host %s: no network %q in this lab (have %v)", h, net, l.networkNames())
		}
		num := 10 + i
		l.Hosts[h] = &Host{Name: h, Num: num, Network: net, Addr: nthAddr(l.Networks[net].Subnet, num), Links: []string{net}}
		if s6 := l.Networks[net].Subnet6; s6.IsValid() {
			l.Hosts[h].Addr6 = nth6(s6, num)
		}
		l.Namespaces = append(l.Namespaces, h)
	}
	return l, nil
}

func (l *Lab) networkNames() []string {
	var out []string
	for _, p := range networkPlans {
		if l.Networks[p.name] != nil {
			out = append(out, p.name)
		}
	}
	return out
}

// nthAddr returns the n-th address of an IPv4 prefix.
func nthAddr(p netip.Prefix, n int) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
