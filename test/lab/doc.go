// Package lab builds the network lab of the btmm tests: network namespaces
// that make a small closed internet with NAT routers that speak NAT-PMP
// (nftables masquerade and miniupnpd), homes, a cafe, a server and hosts
// that can move between networks. Tests build one with Start (or New),
// run programs in it with Exec, run Go code in it with Go (and its
// helpers Listen, ListenPacket, Dial), give a namespace its own DNS
// resolver for what Exec runs (SetResolver: /etc/netns/NS/resolv.conf,
// which `ip netns exec` mounts over /etc/resolv.conf), and change it under
// running programs with Move, SetWAN and RestartNAT. The command btmm-lab
// (cmd/btmm-lab) does the same from a shell.
//
// It needs root, ip (iproute2), nft (nftables) and miniupnpd
// (miniupnpd-nftables); Require names what is missing, and fails the test
// under CI=1 and skips it otherwise.
//
// # Topology and address plan
//
// Every namespace is named PREFIX+NAME, PREFIX being Root, four random
// hex digits and "-" (say btmmlab3f2a-hostA), so labs never collide with
// each other, with leftovers of crashed ones (Cleanup), or with anything
// else. Nothing is made in the machine's own namespace: every veth is
// made with its ends straight in their namespaces.
//
//	internet [inet]                  routes 23.0.0.0/8 between point-to-point links; no default route
//	  server [server]                23.0.0.53/24 via 23.0.0.1           (for bin/coredns)
//	  homeA  [routerA]  wan0 23.1.1.2/24 via 23.1.1.1, NAT + NAT-PMP, lan0 192.168.1.1/24
//	    hostA [hostA]                192.168.1.10 via 192.168.1.1
//	  homeB  [routerB]  wan0 23.2.2.2/24 via 23.2.2.1, NAT + NAT-PMP, lan0 192.168.1.1/24
//	    hostB [hostB]                192.168.1.11 via 192.168.1.1
//	  cafe   [cafe]     wan0 23.3.0.2/24 via 23.3.0.1, routed, lan0 23.3.3.1/24 (public, no NAT-PMP)
//	  carrier [isp]     wan0 23.4.4.2/24, NAT (carrier grade), no NAT-PMP, lan0 100.64.0.1/24    (Options.DoubleNAT)
//	    homeC [routerC] wan0 100.64.0.2/24, NAT + NAT-PMP, lan0 192.168.1.1/24
//	      hostC [hostC]              192.168.1.12 via 192.168.1.1
//	  carrier2 [isp2]   wan0 23.5.5.2/24, NAT (carrier grade), no NAT-PMP, lan0 100.64.1.0/24   (Options.DoubleNATBoth)
//	    homeD [routerD] wan0 100.64.1.2/24, NAT + NAT-PMP, lan0 192.168.1.1/24
//	      hostD [hostD]              192.168.1.13 via 192.168.1.1
//
// The internet uses 23.0.0.0/8: allocated unicast space outside every
// IANA special-purpose range, which miniupnpd 2.3.1 requires of a WAN
// address before it serves NAT-PMP ("Reserved / private IP address ...
// Port forwarding is impossible" and result 3 otherwise). Since the lab's
// internet is closed (no default route in inet, no link to the machine's
// namespace), the real 23/8 is never reached; inside the lab it is
// shadowed, which nothing in the lab needs. Every home is 192.168.1.0/24,
// as real homes are; a host's number (.10, .11, ...) is fixed for the lab
// (Host.Num) and is its host part on every network, so two hosts never
// share an address even in the same subnet. The cafe's LAN is public
// (routed by inet). The carrier uses the shared address space of RFC
// 6598, so routerC's WAN address is not public and its NAT-PMP answers
// result 3 (network failure): RFC 6281 §4.4.
//
// With Options.IPv6, the server, homeA, homeB and the cafe also have
// global IPv6 from the documentation prefix (RFC 3849), routed by inet
// without NAT; a host's IPv6 address ends in its number in hex:
//
//	server                           2001:db8::53/64 via 2001:db8::1
//	homeA  [routerA]  wan0 2001:db8:1::2/64 via ::1, lan0 2001:db8:1:1::1/64
//	    hostA                        2001:db8:1:1::a via 2001:db8:1:1::1
//	homeB  [routerB]  wan0 2001:db8:2::2/64 via ::1, lan0 2001:db8:2:1::1/64
//	    hostB                        2001:db8:2:1::b
//	cafe   [cafe]     wan0 2001:db8:3::2/64 via ::1, lan0 2001:db8:3:1::1/64
//
// A NAT router's forward filter (below) applies to IPv6 as to IPv4, as a
// home router's firewall does: nothing gets in that a host inside did not
// open, and only what punches through reaches a host from outside.
// Masquerade is IPv4's alone. A router whose miniupnpd serves PCP also
// opens IPv6 pinholes: a PCP MAP for a host's global IPv6 address adds an
// accept rule for it to chain miniupnpd (ext_ifname6=wan0; NAT-PMP and
// UPnP IGD open nothing for IPv6 here). CutIP cuts one IP version through a NAT
// router (a rule first in its forward chain) and mends it: a home whose
// IPv4 broke while IPv6 works.
//
// Each LAN is a bridge (lan0) in its router with a fixed MAC address
// (02:b7:00:00:NN:01); each host has one veth per network it has been on
// (eth-NETWORK, all with the host's own MAC 02:b7:10:00:00:NUM) whose
// peer is a port of that bridge (p-HOST). Move brings the other one up,
// waits until it is operationally up, then takes the current one down
// (its address flushed) and gives the other the host's address there and
// the default route; it makes the veth the first time. (With the address
// and route on a veth that the kernel has not activated yet, an ARP
// request from a stream running through the move was dropped and asked
// again only a second later: 1 s stalls in 2 of 10 moves.) Nothing
// else in the host is touched (a TUN device and its routes stay), so a
// test can call Move under a running stream: a TCP connection from home
// stalls in the cafe and goes on within milliseconds of coming home.
//
// Per namespace: rp_filter 0 (all, default, lo), ip_forward and IPv6
// forwarding 1 in inet and routers and 0 elsewhere, no IPv6 duplicate
// address detection (addresses are unique by plan, and DAD only delays
// them), and in routers bridge-nf-call-{ip,ip6,arp}tables
// 0, because the machine has br_netfilter loaded. All are set before any
// link exists. Every veth end gets an interface index of its own (from
// 101 up): the kernel's link watcher acts at once on a veth whose index
// differs from its peer's, but batches the others once a second, and
// until it has acted the bridge drops what it should forward (first
// pings then took 1 s). New and Move wait until every veth and bridge
// with ports is operationally up.
//
// # NAT routers
//
// A NAT router has one nftables table, inet filter: an input chain that
// drops new flows to the router itself from wan0 (as real routers do; see
// nftables for why hole punching needs it), IPv6 neighbour discovery
// excepted; a forward chain with policy drop that jumps to chain cut
// (CutIP), accepts established flows and everything from lan0 and
// jumps to chain miniupnpd; nat prerouting and postrouting chains jumping
// to prerouting_miniupnpd and postrouting_miniupnpd, then masquerade on
// wan0 (with a random port per flow for the routers in
// Options.RandomPorts: a mapping that depends on the destination). miniupnpd 2.3.1 fills those three chains (Debian's nft_init.sh is
// not used; it fails here). There is no hairpin: a host cannot reach its
// own public address and mapped port.
//
// miniupnpd runs in the foreground (-d) in a session of its own, with its
// own configuration, pid, lease and log file in the lab's directory
// (StateRoot/PREFIX): by default NAT-PMP/PCP on lan0 and no UPnP
// (Options.NATProtocols switches PCP, NAT-PMP and UPnP IGD per router;
// see NATProtocols for how), secure_mode, mappings
// of the LAN's own addresses to any port, system_uptime=no. What it did,
// measured here (miniupnpd 2.3.1, Debian's natpmpc, kernel 6.18):
//
//   - Start: it restores the mappings of its lease file (and their nft
//     rules, without duplicates), then multicasts one PCP ANNOUNCE
//     (24 bytes, version 2, opcode 0x80, epoch 0) to 224.0.0.1:5350 from
//     GATEWAY:5351, and no NAT-PMP announcement. Its epoch starts at 0.
//   - SIGTERM: it exits and leaves its nft rules and lease file. It can
//     miss a SIGTERM that arrives while it is busy (it checks its quit
//     flag before select, not in it), and then sleeps on until select
//     times out; the lab repeats the signal every 100 ms.
//   - RestartNAT(router, false) is stop and start: new epoch (0), the
//     PCP ANNOUNCE, mappings kept. RestartNAT(router, true) is a power
//     cycle: the lease file is deleted, miniupnpd's three chains flushed
//     and the conntrack table emptied before the start, so mappings and
//     masqueraded flows are gone. Each takes 20 to 200 ms.
//   - An address change on wan0: with enable_upnp=no miniupnpd watches no
//     netlink events (its interface watcher is opened only together with
//     UPnP's SSDP socket), so it answers the new address at once but
//     announces nothing and keeps its epoch. SetWAN therefore sends it
//     SIGUSR1, as a DHCP client hook on a real router would. Then it
//     multicasts, once each and within about 10 ms, a NAT-PMP announcement
//     (12 bytes, opcode 128, result 0, the epoch it had before, the new
//     address) and a PCP ANNOUNCE (epoch 0), and its epoch starts again
//     from 0. No repeats follow (RFC 6886 asks for ten). (With UPnP on,
//     a netlink address event has the same effect plus one extra PCP
//     ANNOUNCE for the deletion.)
//   - Its DNAT rules match the port on wan0, not the WAN address, so a
//     mapping keeps working after SetWAN; the kernel drops the conntrack
//     entries masqueraded to the old address, so outgoing flows get new
//     ones.
//   - Lifetimes are granted as asked (even 5 s) and an expired mapping is
//     removed 1 to 3 s after its lifetime ends.
//   - Behind the carrier NAT, natpmpc gets result 3 (network failure) for
//     the external address request. In the cafe, nothing listens on the
//     gateway's port 5351: natpmpc fails at once on the ICMP port
//     unreachable (error -7).
//
// With UPnP IGD on (enable_upnp=yes), miniupnpd also answers SSDP
// M-SEARCHes on lan0 (hosts reach 239.255.255.250 through their default
// route; a search from hostA is answered within MX, tens of
// milliseconds here) and serves its description and SOAP control over
// HTTP on lan0, on a port it picks anew at each start. Its UPnP mappings
// go in the same lease file and nftables chains as NAT-PMP's, so
// RestartNAT(router, true) loses them too; it sends no announcement for
// UPnP that a client could hear (only SSDP NOTIFYs), so a client notices
// a restart only by asking.
//
// # Cost
//
// On this machine (2 shared cores) building the default lab takes 0.25 to
// 0.5 s, with the double NAT 0.35 to 0.55 s (up to 1 s under load); Close
// 60 to 150 ms; Move 20 to 40 ms; RestartNAT 20 to 200 ms. The lab's own
// tests take about 5 s.
package lab
