package tun

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

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

// device is what the Linux and macOS Devices share: the wireguard tun
// device, what Create gave it, and the methods that pass through to it.
type device struct {
	dev  wgtun.Device
	name string
	ula  netip.Addr
	mtu  int
	// eventsDone is closed when the events drain ends, after Close.
	eventsDone chan struct{}

	closed    atomic.Bool // set before the device is closed
	closeOnce sync.Once
	closeErr  error
}

// checkArgs checks Create's address and MTU, and returns the MTU to use.
func checkArgs(ula netip.Addr, mtu int) (int, error) {
	if err := checkULA(ula); err != nil {
		return 0, err
	}
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < MinMTU || mtu > MaxMTU {
		return 0, fmt.Errorf("tun: MTU %d outside [%d, %d]", mtu, MinMTU, MaxMTU)
	}
	return mtu, nil
}

// start takes dev on and drains its events. The tun package reports link
// events on a channel of 5, and its listener goroutines block once it is
// full; drained, they neither stall nor leak on Close. Link state is ours
// to manage, so the events carry nothing we need.
func (d *device) start(dev wgtun.Device, ula netip.Addr, mtu int) {
	d.dev, d.ula, d.mtu, d.eventsDone = dev, ula, mtu, make(chan struct{})
	go func() {
		defer close(d.eventsDone)
		for range dev.Events() {
		}
	}()
}

// close closes the device once, then runs then (if not nil).
func (d *device) close(then func()) error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		d.closeErr = d.dev.Close()
		<-d.eventsDone // the tun package's listeners have exited
		if then != nil {
			then()
		}
	})
	return d.closeErr
}

// Read reads one or more packets. Packet i is bufs[i][Offset:Offset+sizes[i]]
// for i < n; len(sizes) must be at least len(bufs), and each buffer should
// be BufferLen(MTU()) long. Give BatchSize buffers: one read may return a
// whole GSO super-packet split into many (see ErrTooManySegments).
//
// Packets are IPv6 as the kernel routed them here: mostly to a peer's ULA,
// but possibly also multicast (MLD) and the like, so the caller must pick
// the SA by destination and drop what matches none.
//
// os.ErrClosed means the device was closed; ErrTooManySegments is a drop.
// Any other error means the device is unusable.
func (d *device) Read(bufs [][]byte, sizes []int) (int, error) {
	n, err := d.dev.Read(bufs, sizes, Offset)
	if err != nil && d.closed.Load() {
		// Close also makes the tun package's netlink listener queue a
		// "socket closed" error for Read; report what happened instead.
		return 0, os.ErrClosed
	}
	if errors.Is(err, wgtun.ErrTooManySegments) {
		// The tun package returns a count that does not say which buffers
		// hold whole packets; drop the lot.
		return 0, ErrTooManySegments
	}
	return n, err
}

// Write writes the IPv6 packets at bufs[i][Offset:] into the device, which
// delivers them to the host's stack as if received on this link.
//
// Write uses the buffers as scratch space: it overwrites the octets in
// front of each packet (a virtio header on Linux, the utun header on
// macOS), and on Linux GRO may merge packets of one flow into the first
// one's buffer, up to its capacity (spare capacity beyond len lets it
// merge more). Don't reuse the contents afterwards.
//
// Unlike wireguard's tun.Device.Write, there is no count: on Linux that
// count is bytes, not packets, and after GRO packets no longer map to
// writes. A nil error means every packet was handed over. Otherwise the
// errors of the failing writes are joined; errors.Is(err, os.ErrClosed)
// means the device was closed, anything else concerns individual packets
// (e.g. the kernel refusing a malformed one) and the device stays usable.
func (d *device) Write(bufs [][]byte) error {
	if len(bufs) == 0 {
		return nil
	}
	_, err := d.dev.Write(bufs, Offset)
	if err != nil && d.closed.Load() {
		return os.ErrClosed
	}
	return err
}

// BatchSize is the number of buffers Read and Write work best with (and
// that Read needs to never drop a GSO super-packet): on Linux 128 with
// offloads, 1 on a kernel without IFF_VNET_HDR; 1 on macOS. It does not
// change.
func (d *device) BatchSize() int { return d.dev.BatchSize() }

// Name is the interface name the kernel gave the device.
func (d *device) Name() string { return d.name }

// MTU is the MTU the device was created with.
func (d *device) MTU() int { return d.mtu }

// ULA is this host's address on the device.
func (d *device) ULA() netip.Addr { return d.ula }
