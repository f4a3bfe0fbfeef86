package tun

import (
	"fmt"
	"net/netip"

	wgtun "golang.zx2c4.com/wireguard/tun"

	"github.com/openbtmm/btmm/client/tunnel/esp"
)

// Buffer layout. Read leaves Offset octets free in front of each packet and
// Write expects the same, so a whole batch moves between the device and the
// UDP socket without a copy:
//
//	buf: [0, Offset)               ESP header (SPI, seq, IV), written in place by the sealer
//	     [Offset, Offset+size)     the inner IPv6 packet
//	     [Offset+size, ...)        room for the ESP trailer and ICV (TrailerRoom)
//
// The outer IPv4 and UDP headers are not in the buffer: the kernel's UDP
// socket writes them. The same layout serves inbound: an opened ESP packet
// leaves the inner packet at [Offset, ...) of the datagram's buffer, ready
// for Write.
const (
	// Offset is the headroom in front of every packet: the ESP header,
	// esp.HeaderLen = 16 octets. It must also cover what the wireguard tun
	// package writes in front of each packet on Write: the 10-octet
	// virtio_net_hdr on Linux with offloads on, the 4-octet address family
	// of a utun on macOS (by then the ESP header there has been used).
	Offset = esp.HeaderLen
	// TrailerRoom is what a buffer needs after the packet for an in-place
	// seal: padding (≤ 3), pad length, next header and the ICV: 21 octets.
	TrailerRoom = esp.MaxPad + esp.TrailerLen + esp.ICVLen
)

// BufferLen is the size each buffer passed to Read should have for a device
// of the given MTU: the headroom, a full-sized packet and the ESP trailer.
func BufferLen(mtu int) int { return Offset + mtu + TrailerRoom }

// ErrTooManySegments is returned by Read, with n == 0, when the kernel
// handed over a GSO super-packet that splits into more packets than the
// caller gave buffers. That packet is lost (the sender retransmits, as for
// any drop); the device stays usable. Pass BatchSize buffers to avoid it.
var ErrTooManySegments = wgtun.ErrTooManySegments

// checkULA accepts only unique local IPv6 addresses (fc00::/7, RFC 4193):
// BTMM addresses hosts by ULA, and routing anything wider into the tunnel
// would capture traffic that belongs elsewhere.
func checkULA(a netip.Addr) error {
	if !a.Is6() || a.Is4In6() || a.Zone() != "" || !a.IsPrivate() {
		return fmt.Errorf("tun: %v is not an IPv6 unique local address", a)
	}
	return nil
}
