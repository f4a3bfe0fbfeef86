package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// buildHook, when set (by tests), runs before each later stage of build
// and can make it fail there.
var buildHook func(l *Lab, stage string) error

// build makes the planned lab: namespaces, sysctls, links, addresses,
// routes, nftables and miniupnpd.
func (l *Lab) build() error {
	t0 := time.Now()
	for _, ns := range l.Namespaces {
		if err := run(tool("ip"), "netns", "add", l.NS(ns)); err != nil {
			return err
		}
	}
	// Namespaces inherit the machine's rp_filter and forwarding; a
	// bridge passes its frames through the machine's iptables when
	// br_netfilter is loaded. Set all of these here, before any link
	// exists, so the links take the "default" values.
	if err := parallel(l.Namespaces, func(ns string) error {
		fwd := "0"
		if ns == "inet" || l.Routers[ns] != nil {
			fwd = "1"
		}
		if err := l.sysctl(ns, false,
			"net.ipv4.conf.all.rp_filter", "0",
			"net.ipv4.conf.default.rp_filter", "0",
			"net.ipv4.conf.lo.rp_filter", "0",
			"net.ipv4.ip_forward", fwd,
		); err != nil {
			return err
		}
		// IPv6 forwarding on routers (it also turns off their
		// acceptance of router advertisements). Addresses are static
		// and unique by plan, so duplicate address detection only
		// delays them (addresses are also added with nodad).
		if err := l.sysctl(ns, false,
			"net.ipv6.conf.all.forwarding", fwd,
			"net.ipv6.conf.default.accept_dad", "0",
		); err != nil {
			return err
		}
		if l.Routers[ns] == nil {
			return nil
		}
		return l.sysctl(ns, true,
			"net.bridge.bridge-nf-call-iptables", "0",
			"net.bridge.bridge-nf-call-ip6tables", "0",
			"net.bridge.bridge-nf-call-arptables", "0",
		)
	}); err != nil {
		return err
	}

	// Links are made from one end, with the other end put straight into
	// its namespace: nothing is ever made in the machine's namespace, so
	// labs cannot collide on link names.
	create := map[string][]string{}
	config := map[string][]string{}
	add := func(m map[string][]string, ns string, f string, args ...any) {
		m[ns] = append(m[ns], fmt.Sprintf(f, args...))
	}
	for _, ns := range l.Namespaces {
		add(config, ns, "link set dev lo up")
	}
	for _, s := range l.Servers {
		add(create, "inet", "link add name %s %s type veth peer name eth0 %s netns %s", s.InetIf, l.index(), l.index(), l.NS(s.Name))
		add(config, "inet", "addr add %s dev %s", netip.PrefixFrom(s.Upper, s.Addr.Bits()), s.InetIf)
		add(config, "inet", "link set dev %s up", s.InetIf)
		add(config, s.Name, "addr add %s dev eth0", s.Addr)
		add(config, s.Name, "link set dev eth0 up")
		add(config, s.Name, "route add default via %s dev eth0", s.Upper)
		if s.Addr6.IsValid() {
			add(config, "inet", "addr add %s dev %s nodad", netip.PrefixFrom(s.Upper6, s.Addr6.Bits()), s.InetIf)
			add(config, s.Name, "addr add %s dev eth0 nodad", s.Addr6)
			add(config, s.Name, "route add ::/0 via %s dev eth0 onlink", s.Upper6)
		}
	}
	for _, name := range l.networkNames() {
		n := l.Networks[name]
		r := l.Routers[n.Router]
		add(create, r.Name, "link add name lan0 type bridge")
		add(create, r.Name, "link set dev lan0 address %s", n.MAC)
		if r.Uplink == Internet {
			add(create, "inet", "link add name %s %s type veth peer name wan0 %s netns %s", r.InetIf, l.index(), l.index(), l.NS(r.Name))
			add(config, "inet", "addr add %s dev %s", netip.PrefixFrom(r.Upper, r.Link.Bits()), r.InetIf)
			add(config, "inet", "link set dev %s up", r.InetIf)
			if !r.NAT {
				add(config, "inet", "route add %s via %s dev %s", n.Subnet, r.WAN.Addr(), r.InetIf)
			}
			if r.WAN6.IsValid() {
				add(config, "inet", "addr add %s dev %s nodad", netip.PrefixFrom(r.Upper6, r.WAN6.Bits()), r.InetIf)
				add(config, "inet", "route add %s via %s dev %s onlink", n.Subnet6, r.WAN6.Addr(), r.InetIf)
			}
		} else {
			up := l.Networks[r.Uplink].Router
			add(create, up, "link add name p-%s %s type veth peer name wan0 %s netns %s", r.Name, l.index(), l.index(), l.NS(r.Name))
			add(config, up, "link set dev p-%s master lan0", r.Name)
			add(config, up, "link set dev p-%s up", r.Name)
			if !r.NAT {
				// A routed network behind another: its uplink's router
				// routes it back (and NATs it, if it is a NAT).
				add(config, up, "route add %s via %s dev lan0", n.Subnet, r.WAN.Addr())
			}
		}
		add(config, r.Name, "addr add %s dev wan0", r.WAN)
		add(config, r.Name, "link set dev wan0 up")
		add(config, r.Name, "route add default via %s dev wan0 onlink", r.Upper)
		add(config, r.Name, "addr add %s dev lan0", netip.PrefixFrom(n.Gateway, n.Subnet.Bits()))
		add(config, r.Name, "link set dev lan0 up")
		if r.WAN6.IsValid() {
			// IPv6 routes need their device up.
			add(config, r.Name, "addr add %s dev wan0 nodad", r.WAN6)
			add(config, r.Name, "route add ::/0 via %s dev wan0 onlink", r.Upper6)
			add(config, r.Name, "addr add %s dev lan0 nodad", netip.PrefixFrom(n.Gateway6, n.Subnet6.Bits()))
		}
	}
	for _, ns := range l.Namespaces {
		h := l.Hosts[ns]
		if h == nil {
			continue
		}
		n := l.Networks[h.Network]
		create[h.Name] = append(create[h.Name], l.hostLinkLines(h, n)...)
		add(config, n.Router, "link set dev p-%s master lan0", h.Name)
		add(config, n.Router, "link set dev p-%s up", h.Name)
		config[h.Name] = append(config[h.Name], hostUpLines(h, n)...)
	}
	// A link made by a router's batch may need a bridge from the same
	// batch; every batch makes its own bridge before its links.
	if err := parallel(l.Namespaces, func(ns string) error { return l.ipBatch(ns, create[ns]) }); err != nil {
		return err
	}
	if err := parallel(l.Namespaces, func(ns string) error { return l.ipBatch(ns, config[ns]) }); err != nil {
		return err
	}
	if err := l.waitLinksUp(l.Namespaces, 3*time.Second); err != nil {
		return err
	}
	tLinks := time.Since(t0)

	var nat, pmp []string
	for _, name := range l.Namespaces {
		if r := l.Routers[name]; r != nil && r.NAT {
			nat = append(nat, name)
			if r.NATPMP {
				pmp = append(pmp, name)
			}
		}
	}
	if err := parallel(nat, func(ns string) error { return l.nftables(ns) }); err != nil {
		return err
	}
	if buildHook != nil {
		if err := buildHook(l, "miniupnpd"); err != nil {
			return err
		}
	}
	l.mu.Lock()
	err := parallel(pmp, func(ns string) error { return l.startNATLocked(ns) })
	l.mu.Unlock()
	if err != nil {
		return err
	}
	l.logf("lab %s: built in %v (namespaces and links %v)", l.Prefix, time.Since(t0).Round(time.Millisecond), tLinks.Round(time.Millisecond))
	return nil
}

// hostMAC is the MAC address of every veth of a host: one laptop, one
// Wi-Fi card, whichever network it joins.
func hostMAC(h *Host) string { return fmt.Sprintf("02:b7:10:00:00:%02x", h.Num) }

// hostLinkLines make a host's veth into network n (run in the host).
func (l *Lab) hostLinkLines(h *Host, n *Network) []string {
	return []string{fmt.Sprintf("link add name eth-%s %s address %s type veth peer name p-%s %s netns %s",
		n.Name, l.index(), hostMAC(h), h.Name, l.index(), l.NS(n.Router))}
}

// index returns "index N" with a new interface index, unique in the
// lab. The kernel's link watcher handles a veth's carrier change at once
// only when its index differs from its peer's; otherwise it batches it
// with others, once a second, and the veth forwards nothing meanwhile.
// With indexes of their own, new links are ready in milliseconds.
func (l *Lab) index() string {
	if l.NextIndex < 100 {
		l.NextIndex = 100
	}
	l.NextIndex++
	return fmt.Sprintf("index %d", l.NextIndex)
}

// hostUpLines bring a host up on network n (run in the host).
func hostUpLines(h *Host, n *Network) []string {
	lines := []string{
		fmt.Sprintf("link set dev eth-%s up", n.Name),
		fmt.Sprintf("addr add %s dev eth-%s", netip.PrefixFrom(nthAddr(n.Subnet, h.Num), n.Subnet.Bits()), n.Name),
		fmt.Sprintf("route replace default via %s dev eth-%s", n.Gateway, n.Name),
	}
	if n.Subnet6.IsValid() {
		lines = append(lines,
			fmt.Sprintf("addr add %s dev eth-%s nodad", netip.PrefixFrom(nth6(n.Subnet6, h.Num), n.Subnet6.Bits()), n.Name),
			fmt.Sprintf("route replace ::/0 via %s dev eth-%s onlink", n.Gateway6, n.Name),
		)
	}
	return lines
}

// nftables loads a NAT router's ruleset: a home router's stateful
// forward filter (LAN to anywhere; back in only for established flows
// and what miniupnpd opens), masquerade on wan0, an input rule that
// rejects NAT-PMP or PCP when only the other is on, and the chains that
// miniupnpd 2.3.1 fills (table inet filter: miniupnpd,
// prerouting_miniupnpd, postrouting_miniupnpd), jumped to from the base
// chains. Debian's nft_init.sh is not used: it fails here.
func (l *Lab) nftables(router string) error {
	masquerade := "masquerade"
	if r := l.Routers[router]; r != nil && r.RandomPorts {
		masquerade = "masquerade random"
	}
	// The router itself takes no new flow from its WAN side, as home
	// routers and carriers' NATs do: a packet that no flow expects is
	// dropped before its connection-tracking entry is confirmed. (Were
	// it delivered, its entry would hold the very address and ports that
	// a host behind the router is about to use toward its sender, and the
	// host's flow would get another port: hole punching would fail.)
	input := "\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n\t\tiifname \"wan0\" ct state new drop"
	ruleset := `table inet filter {
	chain input {
		type filter hook input priority 0; policy accept;
		INPUT
	}
	chain forward {
		type filter hook forward priority 0; policy drop;
		jump cut
		ct state established,related accept
		iifname "lan0" accept
		jump miniupnpd
	}
	chain miniupnpd {
	}
	chain cut {
	}
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		jump prerouting_miniupnpd
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		jump postrouting_miniupnpd
		oifname "wan0" meta nfproto ipv4 ` + masquerade + `
	}
	chain prerouting_miniupnpd {
	}
	chain postrouting_miniupnpd {
	}
}
`
	// One of NAT-PMP and PCP without the other: miniupnpd serves both or
	// neither, so the other's requests are rejected by their version
	// octet, the first of the UDP payload (see NATProtocols).
	p := l.Routers[router].Protocols
	reject := -1
	switch {
	case p.PCP && !p.NATPMP:
		reject = 0 // NAT-PMP
	case p.NATPMP && !p.PCP:
		reject = 2 // PCP
	}
	if reject >= 0 {
		input += fmt.Sprintf("\n\t\tiifname \"lan0\" udp dport 5351 @th,64,8 %d reject", reject)
	}
	ruleset = strings.Replace(ruleset, "\t\tINPUT", input, 1)
	cmd := exec.Command(tool("ip"), "netns", "exec", l.NS(router), tool("nft"), "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: nftables in %s: %v: %s", router, err, out)
	}
	return nil
}

// parallel runs fn for every item at once and joins the errors.
func parallel(items []string, fn func(string) error) error {
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(it)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
