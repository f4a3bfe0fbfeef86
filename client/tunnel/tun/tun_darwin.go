package tun

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"

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
	device
}

// Create creates a utun device, gives it the MTU and this host's ULA (as
// a /128: the peers' ULAs are routed one by one with AddPeer), and brings
// it up. It needs root. name "" or "utun" lets the kernel number it;
// otherwise it must be utunN. mtu 0 means DefaultMTU.
func Create(name string, ula netip.Addr, mtu int) (*Device, error) {
	mtu, err := checkArgs(ula, mtu)
	if err != nil {
		return nil, err
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
	d := &Device{}
	d.start(dev, ula, mtu)
	d.name = real
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

// Close closes the device; the kernel removes the interface, its address
// and its routes. Pending Reads return os.ErrClosed.
func (d *Device) Close() error { return d.close(nil) }
