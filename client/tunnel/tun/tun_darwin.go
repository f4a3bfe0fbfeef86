package tun

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Device is a utun device carrying the inner IPv6 traffic of the tunnel
// (macOS). It has the Linux Device's methods and buffer layout; a utun has
// no offloads, so BatchSize is 1 and Write never merges packets.
//
// The address and the peers' routes are set with ifconfig(8) and
// route(8), which every macOS has: what they do is stable and documented,
// where the ioctls and routing-socket messages behind them are not.
//
// This file is cross-compiled in CI; it has not been run on a Mac yet.
type Device struct {
	dev        wgtun.Device
	name       string
	ula        netip.Addr
	mtu        int
	eventsDone chan struct{}

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Create creates a utun device, gives it the MTU and this host's ULA (as
// a /128: the peers' ULAs are routed one by one with AddPeer), and brings
// it up. It needs root. name "" or "utun" lets the kernel number it;
// otherwise it must be utunN. mtu 0 means DefaultMTU.
func Create(name string, ula netip.Addr, mtu int) (*Device, error) {
	if err := checkULA(ula); err != nil {
		return nil, err
	}
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < MinMTU || mtu > MaxMTU {
		return nil, fmt.Errorf("tun: MTU %d outside [%d, %d]", mtu, MinMTU, MaxMTU)
	}
	if name == "" || strings.Contains(name, "%d") {
		name = "utun"
	}
	dev, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("tun: creating %s: %w", name, err)
	}
	real, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("tun: %w", err)
	}
	d := &Device{dev: dev, name: real, ula: ula, mtu: mtu, eventsDone: make(chan struct{})}
	go func() {
		defer close(d.eventsDone)
		for range dev.Events() {
		}
	}()
	if err := run("ifconfig", real, "inet6", ula.String(), "prefixlen", "128", "up"); err != nil {
		d.Close()
		return nil, fmt.Errorf("tun: %s: address %v: %w", real, ula, err)
	}
	return d, nil
}

// run runs a system command and returns its output as the error if it
// fails.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// AddPeer routes peer/128 into the device. It is idempotent: an existing
// route is changed to point here.
func (d *Device) AddPeer(peer netip.Addr) error {
	if err := checkULA(peer); err != nil {
		return err
	}
	if peer == d.ula {
		return fmt.Errorf("tun: peer %v is this host's own ULA", peer)
	}
	if err := run("route", "-q", "-n", "add", "-inet6", "-host", peer.String(), "-interface", d.name); err != nil {
		if err2 := run("route", "-q", "-n", "change", "-inet6", "-host", peer.String(), "-interface", d.name); err2 != nil {
			return fmt.Errorf("tun: %s: route %v: %w", d.name, peer, errors.Join(err, err2))
		}
	}
	return nil
}

// RemovePeer deletes the route AddPeer installed; a peer without one is
// not an error.
func (d *Device) RemovePeer(peer netip.Addr) error {
	if err := checkULA(peer); err != nil {
		return err
	}
	if err := run("route", "-q", "-n", "delete", "-inet6", "-host", peer.String(), "-interface", d.name); err != nil &&
		!strings.Contains(err.Error(), "not in table") {
		return fmt.Errorf("tun: %s: delete route %v: %w", d.name, peer, err)
	}
	return nil
}

// Read reads one packet into bufs[0][Offset:Offset+sizes[0]].
func (d *Device) Read(bufs [][]byte, sizes []int) (int, error) {
	n, err := d.dev.Read(bufs, sizes, Offset)
	if err != nil && d.closed.Load() {
		return 0, os.ErrClosed
	}
	return n, err
}

// Write writes the IPv6 packets at bufs[i][Offset:] into the device. It
// overwrites the 4 octets in front of each packet with the utun header.
func (d *Device) Write(bufs [][]byte) error {
	if len(bufs) == 0 {
		return nil
	}
	_, err := d.dev.Write(bufs, Offset)
	if err != nil && d.closed.Load() {
		return os.ErrClosed
	}
	return err
}

// BatchSize is 1: a utun moves one packet per read or write.
func (d *Device) BatchSize() int { return d.dev.BatchSize() }

// Name is the interface name the kernel gave the device.
func (d *Device) Name() string { return d.name }

// MTU is the MTU the device was created with.
func (d *Device) MTU() int { return d.mtu }

// ULA is this host's address on the device.
func (d *Device) ULA() netip.Addr { return d.ula }

// Close closes the device; the kernel removes the interface, its address
// and its routes. Pending Reads return os.ErrClosed.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		d.closeErr = d.dev.Close()
		<-d.eventsDone
	})
	return d.closeErr
}
