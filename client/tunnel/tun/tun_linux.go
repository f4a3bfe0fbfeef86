package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

const (
	// virtioNetHdrLen is sizeof(struct virtio_net_hdr), the prefix the
	// kernel exchanges with a TUN opened with IFF_VNET_HDR. The wireguard
	// tun package does not export it.
	virtioNetHdrLen = 10

	// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE (linux/if_link.h), missing
	// from x/sys/unix.
	addrGenModeNone = 1
)

// Offset has to cover the virtio header; fail the build if it ever does not.
var _ [Offset - virtioNetHdrLen]struct{}

// Device is a TUN device carrying the inner IPv6 traffic of the tunnel.
//
// Offloads: the device is opened with IFF_VNET_HDR and TSO/USO enabled, as
// wireguard-go's CreateTUN always does on Linux. The kernel then hands over
// TCP and UDP super-packets of up to 64 KiB in one read, and Read splits
// them into MTU-sized packets (headers and checksums fixed up) across the
// given buffers; Write coalesces packets of the same flow (GRO) before
// handing them to the kernel. This cuts syscalls per packet by up to the
// batch size, which matters more than the one copy it costs (Read goes
// through the package's internal buffer instead of straight into bufs[0]).
// What the caller sees is still plain IPv6 packets no bigger than the MTU,
// with valid checksums; only the count per Read changes.
//
// Read and Write may be called concurrently with each other; concurrent
// Reads (or Writes) are serialized by the tun package. AddPeer, RemovePeer
// and Close may be called from any goroutine.
type Device struct {
	device
	nl    *netlink.Handle // bound to the namespace Create ran in
	index int
}

// Create creates a TUN device, gives it the MTU and this host's ULA, and
// brings it up. It needs CAP_NET_ADMIN.
//
// name may contain one %d for the kernel to number it; "" means "btmm%d".
// mtu 0 means DefaultMTU; otherwise it must lie in [MinMTU, MaxMTU] (use
// InnerMTU to derive it from the path).
//
// The device is created in the network namespace of the calling OS thread,
// and remembers it: later calls may come from any goroutine.
//
// The address is added as ula/128 with noprefixroute and nodad: a /128
// prefix route would only duplicate the local route for our own address,
// and would collide with nothing useful; the peers' ULAs are routed one by
// one with AddPeer. DAD makes no sense on a point-to-point tunnel and would
// leave the address tentative (unusable as a source) for a second or so.
// IPv6 link-local address generation is turned off: nothing on this link
// speaks neighbour discovery, and it keeps router solicitations out of the
// tunnel.
func Create(name string, ula netip.Addr, mtu int) (d *Device, err error) {
	if mtu, err = checkArgs(ula, mtu); err != nil {
		return nil, err
	}
	if name == "" {
		name = "btmm%d"
	}

	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("tun: netlink: %w", err)
	}
	// CreateTUN sets the MTU itself (SIOCSIFMTU).
	dev, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("tun: create %q: %w", name, err)
	}
	d = &Device{nl: nl}
	d.start(dev, ula, mtu)
	defer func() {
		if err != nil {
			d.Close()
		}
	}()

	if d.name, err = dev.Name(); err != nil {
		return nil, fmt.Errorf("tun: name: %w", err)
	}
	link, err := nl.LinkByName(d.name)
	if err != nil {
		return nil, fmt.Errorf("tun: %s: %w", d.name, err)
	}
	d.index = link.Attrs().Index

	if err := nl.LinkSetIP6AddrGenMode(link, addrGenModeNone); err != nil {
		return nil, fmt.Errorf("tun: %s: addrgenmode none: %w", d.name, err)
	}
	addr := &netlink.Addr{
		IPNet: hostNet(ula),
		Flags: unix.IFA_F_NOPREFIXROUTE | unix.IFA_F_NODAD,
	}
	if err := nl.AddrAdd(link, addr); err != nil {
		return nil, fmt.Errorf("tun: %s: add %v: %w", d.name, ula, err)
	}
	if err := nl.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("tun: %s: up: %w", d.name, err)
	}
	if err := d.waitLocalRoute(); err != nil {
		return nil, err
	}
	return d, nil
}

// localRouteWait bounds how long Create waits for the kernel to make the
// ULA usable; it normally takes a few milliseconds.
const localRouteWait = 3 * time.Second

// waitLocalRoute waits for the kernel to install the local route for our
// ULA. Even with nodad the kernel finishes the address's setup from a
// workqueue after the link comes up; until then packets written to the
// device for our ULA are dropped as unroutable (Ip6InNoRoutes). Returning
// only once it is there means the first inbound packets are delivered.
func (d *Device) waitLocalRoute() error {
	filter := &netlink.Route{Table: unix.RT_TABLE_LOCAL, Dst: hostNet(d.ula)}
	for deadline := time.Now().Add(localRouteWait); ; time.Sleep(2 * time.Millisecond) {
		rs, err := d.nl.RouteListFiltered(netlink.FAMILY_V6, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
		if err != nil {
			return fmt.Errorf("tun: %s: listing routes: %w", d.name, err)
		}
		if len(rs) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tun: %s: no local route for %v after %v", d.name, d.ula, localRouteWait)
		}
	}
}

func hostNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(128, 128)}
}

func (d *Device) route(peer netip.Addr) *netlink.Route {
	return &netlink.Route{
		LinkIndex: d.index,
		Dst:       hostNet(peer),
		Scope:     netlink.SCOPE_UNIVERSE,
	}
}

// AddPeer routes peer/128 into the device, so the host's packets to that
// ULA reach Read. It is idempotent (the route is replaced, not added), so a
// daemon can reconcile its peer list without tracking what it installed.
func (d *Device) AddPeer(peer netip.Addr) error {
	if err := checkULA(peer); err != nil {
		return err
	}
	if peer == d.ula {
		return fmt.Errorf("tun: peer %v is this host's own ULA", peer)
	}
	if err := d.nl.RouteReplace(d.route(peer)); err != nil {
		return fmt.Errorf("tun: %s: route %v: %w", d.name, peer, err)
	}
	return nil
}

// RemovePeer deletes the route AddPeer installed. Removing a peer that has
// no route is not an error, for the same reason AddPeer is idempotent.
func (d *Device) RemovePeer(peer netip.Addr) error {
	if err := checkULA(peer); err != nil {
		return err
	}
	if err := d.nl.RouteDel(d.route(peer)); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("tun: %s: delete route %v: %w", d.name, peer, err)
	}
	return nil
}

// Close closes the device. The kernel removes the interface, and its
// address and peer routes with it, when its last file descriptor closes.
// Pending Reads return os.ErrClosed. Close is safe to call more than once.
func (d *Device) Close() error { return d.close(func() { d.nl.Close() }) }
