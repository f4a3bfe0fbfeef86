package userspace

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	wgtun "golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/openbtmm/btmm/client/tunnel"
	"github.com/openbtmm/btmm/client/tunnel/tun"
)

var _ tunnel.TUN = (*Device)(nil)

// Device is a userspace TUN device: the inner IPv6 packets of the tunnel
// go to and come from a TCP/IP stack in this process (gVisor's, through
// golang.zx2c4.com/wireguard/tun/netstack) instead of the kernel. It
// satisfies tunnel.TUN. Connections in the tunnel's address space are made
// with Net (or Proxy, Forward); nothing else on the host sees them.
type Device struct {
	dev  wgtun.Device
	net  *netstack.Net
	ula  netip.Addr
	mtu  int
	logf func(string, ...any)

	// mu is held for reading by Write and for writing by Close, so that no
	// packet is injected into the stack while it shuts down.
	mu     sync.RWMutex
	closed bool // under mu

	fwdMu sync.Mutex
	fwds  map[*Forwarder]struct{} // nil once closed

	closeOnce sync.Once
	closeErr  error
}

// NewDevice makes a userspace device whose stack has the single address
// ula, the host's unique local address (fc00::/7, in practice fd00::/8), and
// the given MTU (0: tun.DefaultMTU, the kernel device's default, so that
// both modes send packets of the same size). logf, if not nil, logs what
// goes wrong with connections that have no caller to return an error to
// (a Forwarder's).
func NewDevice(ula netip.Addr, mtu int, logf func(format string, args ...any)) (*Device, error) {
	if err := checkULA(ula); err != nil {
		return nil, err
	}
	if mtu == 0 {
		mtu = tun.DefaultMTU
	}
	if mtu < tun.MinMTU || mtu > tun.MaxMTU {
		return nil, fmt.Errorf("userspace: MTU %d outside [%d, %d]", mtu, tun.MinMTU, tun.MaxMTU)
	}
	dev, n, err := netstack.CreateNetTUN([]netip.Addr{ula}, nil, mtu)
	if err != nil {
		return nil, fmt.Errorf("userspace: %w", err)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Device{dev: dev, net: n, ula: ula, mtu: mtu, logf: logf, fwds: make(map[*Forwarder]struct{})}, nil
}

// checkULA accepts only unique local IPv6 addresses (fc00::/7, RFC 4193),
// as the tun package does.
func checkULA(a netip.Addr) error {
	if !isULA(a) {
		return fmt.Errorf("userspace: %v is not an IPv6 unique local address", a)
	}
	return nil
}

func isULA(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && a.Zone() == "" && a.IsPrivate()
}

// Net is the stack's socket API: dial and listen in the tunnel's address
// space (the peers' ULAs; this host is ULA). Connections end when the
// device is closed.
func (d *Device) Net() *netstack.Net { return d.net }

// ULA is this host's address in the stack.
func (d *Device) ULA() netip.Addr { return d.ula }

// MTU is the MTU the device was made with.
func (d *Device) MTU() int { return d.mtu }

// BatchSize is 1: the stack hands over one packet per Read. There are no
// system calls to save by batching.
func (d *Device) BatchSize() int { return d.dev.BatchSize() }

// Read reads the next packet the stack sends into bufs[0][tun.Offset:] and
// returns 1, or os.ErrClosed once the device is closed. The buffer should
// be tun.BufferLen(MTU()) long at least; the stack sends no packet larger
// than the MTU.
func (d *Device) Read(bufs [][]byte, sizes []int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	n, err := d.dev.Read(bufs[:1], sizes, tun.Offset)
	if err != nil {
		return 0, os.ErrClosed // the netstack fails only when closed
	}
	return n, nil
}

// Write hands the IPv6 packets at bufs[i][tun.Offset:] to the stack, as if
// received on its link. The stack copies them. A packet the stack cannot
// take (not IP) is skipped and its error joined into the result; the rest
// are delivered. After Close, Write returns os.ErrClosed.
func (d *Device) Write(bufs [][]byte) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return os.ErrClosed
	}
	var errs []error
	for i := range bufs {
		if len(bufs[i]) <= tun.Offset {
			continue
		}
		if _, err := d.dev.Write(bufs[i:i+1], tun.Offset); err != nil {
			errs = append(errs, fmt.Errorf("userspace: packet %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// Close closes the forwarders, then the stack, which ends every connection
// made with Net. Read returns os.ErrClosed afterwards. Calling Close more
// than once is harmless.
//
// The netstack device hands each outgoing packet to Read over an unbuffered
// channel, and closes that channel on Close: a stack goroutine blocked
// sending a packet then would panic. So Close drains the packets while it
// shuts the stack down, and stops Write first (a packet written can make
// the stack answer at once, on the writer's goroutine). That leaves a
// window of a few instructions in the netstack package (a goroutine that
// has taken a packet from the link queue but not yet sent it on when the
// channel is closed), which this package cannot close from outside; close
// the Forwarders and proxies first so the stack is quiet.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.fwdMu.Lock()
		fwds := d.fwds
		d.fwds = nil
		d.fwdMu.Unlock()
		for f := range fwds {
			f.Close()
		}

		drained := make(chan struct{})
		go func() {
			defer close(drained)
			bufs, sizes := [][]byte{make([]byte, tun.BufferLen(d.mtu))}, []int{0}
			for {
				if _, err := d.dev.Read(bufs, sizes, tun.Offset); err != nil {
					return
				}
			}
		}()
		d.mu.Lock()
		d.closed = true
		d.closeErr = d.dev.Close()
		d.mu.Unlock()
		<-drained
	})
	return d.closeErr
}
