// Package tun is the TUN device of a Back to My Mac tunnel (RFC 6281 §2,
// §7.3): applications talk to the peers' IPv6 ULAs, the kernel routes each
// peer's ULA (a /128) into this device, and the tunnel reads the inner IPv6
// packets from it, seals them in ESP-in-UDP and sends them out; inbound ESP
// is opened and the inner packets are written back into the device.
//
// The device is a thin layer over golang.zx2c4.com/wireguard/tun (batched
// reads and writes, GSO/GRO offloads on Linux) plus the netlink plumbing
// (address, MTU, link state, per-peer routes) that wireguard-go leaves to
// wg-quick. Packets move in batches at a fixed [Offset] into caller-owned
// buffers so the ESP header is written in place in front of them, and
// nothing on the Read/Write path allocates.
package tun

import "github.com/openbtmm/btmm/client/tunnel/esp"

// The parts of the encapsulation overhead, outermost first (RFC 3948, RFC 4303).
// An inner IPv6 packet of n octets leaves the host as
//
//	outer IPv4 (20) | UDP (8) | ESP header (16) | n | pad (0–3) | pad len, NH (2) | ICV (16)
const (
	// OuterIPv4HeaderLen is the outer IPv4 header without options: BTMM
	// tunnels run over IPv4 (RFC 6281 §2, §7.3).
	OuterIPv4HeaderLen = 20
	// UDPHeaderLen is the UDP header of the ESP-in-UDP encapsulation
	// (RFC 3948 §2.1).
	UDPHeaderLen = 8
	// ESPOverhead is the most ESP adds to an inner packet: SPI 4, sequence
	// number 4, IV 8, padding at most 3, pad length 1, next header 1,
	// ICV 16 = 37 octets (RFC 4303 §2, RFC 4106/7634).
	ESPOverhead = esp.Overhead
	// Overhead is everything the tunnel adds to an inner packet on the
	// path: 65 octets.
	Overhead = OuterIPv4HeaderLen + UDPHeaderLen + ESPOverhead
)

const (
	// MinMTU is IPv6's minimum link MTU (RFC 8200 §5). The inner link must
	// never go below it, even if that means the outer IPv4 packets get
	// fragmented on a narrow path.
	MinMTU = 1280
	// DefaultPathMTU is the outer path assumed when nothing better is
	// known: Ethernet's 1500.
	DefaultPathMTU = 1500
	// DefaultMTU is InnerMTU(DefaultPathMTU): 1500 − 65 = 1435, rounded
	// down to 1432.
	DefaultMTU = (DefaultPathMTU - Overhead) &^ 7
	// MaxMTU is the largest MTU Create accepts: an IPv6 payload length is
	// 16 bits, and bigger packets could not be sealed into one UDP datagram.
	MaxMTU = 65535 - Overhead
)

// InnerMTU returns the MTU for the inner IPv6 packets when the outer IPv4
// packets may be pathMTU octets long: pathMTU minus [Overhead], rounded down
// to a multiple of 8, and never below [MinMTU].
//
// The worst-case padding (3) is assumed, so every packet up to the MTU fits
// whatever its length mod 4. Rounding to 8 keeps the inner MTU on an IPv6
// fragment boundary (RFC 8200 §4.5: fragment offsets count 8-octet units),
// so a host fragmenting to this MTU produces fragments that use it fully;
// it costs at most 7 octets.
func InnerMTU(pathMTU int) int {
	return max((pathMTU-Overhead)&^7, MinMTU)
}
