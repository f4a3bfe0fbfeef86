// Package userspace is the rootless mode of the client: the tunnel's
// inner side is a TCP/IP stack in the process (gVisor's, through
// golang.zx2c4.com/wireguard/tun/netstack) instead of a kernel TUN device,
// so the client needs neither root nor CAP_NET_ADMIN, nor /dev/net/tun.
//
// A Device satisfies tunnel.TUN: give it to tunnel.New as Config.TUN and
// the tunnel, its handshakes and ESP-in-UDP are unchanged. What changes is
// who can use the tunnel, since the host's kernel knows nothing of the
// ULAs:
//
//   - Outbound, applications reach the user's other hosts through a Proxy:
//     SOCKS5 with names resolved by the proxy (socks5h://, curl
//     --socks5-hostname, ssh -o ProxyCommand='nc -X 5 -x 127.0.0.1:PORT %h
//     %p') or an HTTP proxy (CONNECT, and plain http:// URLs), on a
//     loopback port. The proxy resolves the user's host names to the
//     peers' ULAs itself (Proxy.Resolve); the system resolver is not asked.
//   - Inbound, peers reach this host only on the ports it forwards
//     (Device.Forward), each relayed to a local address such as
//     127.0.0.1:22. Nothing else on this host is reachable from the
//     tunnel.
//
// Use the TUN mode (package client/tunnel/tun) when the client can have
// the privilege: every application and service then reaches and is reached
// at the ULAs transparently, with any protocol, at kernel speed. Use this
// mode when it cannot: an unprivileged account, a container without
// NET_ADMIN, a machine whose owner does not want a daemon running as root.
//
// The costs:
//
//   - Only TCP, and only for applications that can use a proxy. No UDP,
//     no ICMP (ping), no multicast (so no mDNS or Bonjour browsing) over
//     the tunnel, and an application that ignores proxy settings cannot
//     reach the peers.
//   - Services are reached only on forwarded ports, and they see every
//     connection come from the local host, not from the peer's ULA: a
//     service that trusts addresses must not trust these.
//   - Every connection is terminated twice in user space (the application
//     to the proxy, the stack to the peer) and each packet is copied
//     between the stack and the tunnel: more CPU per octet than the kernel
//     path with its GSO/GRO batches (BatchSize is 1 here), which matters
//     for bulk transfers, hardly for ssh or the web.
//   - The proxies ask for no credentials. They listen on loopback only,
//     but any local user of the machine can use them to reach the user's
//     hosts.
//
// The stack runs at the same MTU as the kernel device (tun.DefaultMTU), so
// both modes put the same packets on the wire, and a peer in TUN mode
// cannot tell the difference.
package userspace
