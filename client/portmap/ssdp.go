package portmap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"golang.org/x/net/ipv4"
)

// DefaultSSDPAddr is where UPnP devices multicast their SSDP NOTIFY
// messages (UPnP Device Architecture 2.0 §1.2): 239.255.255.250:1900.
var DefaultSSDPAddr = netip.MustParseAddrPort("239.255.255.250:1900")

// UPnP IGD has no epoch and sends no announcement a client could take
// for NAT-PMP's or PCP's. But a UPnP device multicasts an SSDP NOTIFY
// (ssdp:alive) when it starts, and again every so often (miniupnpd:
// every 30 s), carrying the URL of its description (LOCATION) and, from
// UPnP 1.1 on, a boot counter that changes with every restart
// (BOOTID.UPNP.ORG). While a UPnP IGD mapping is held, a NOTIFY from the
// gateway with another LOCATION (miniupnpd listens on a new HTTP port at
// each start) or another BOOTID says that the router restarted and has
// probably lost its mappings: it is a hint to look the mapping up at
// once, at the new LOCATION, with no SSDP search, as a PCP ANNOUNCE is a
// hint to renew. As with announcements, nothing in it is trusted beyond
// that: the lookup decides.

// listenSSDP binds the SSDP address (SO_REUSEADDR and SO_REUSEPORT, so
// that other UPnP software on the host hears it too) and joins the SSDP
// group on every interface that is up and multicast-capable, then reads
// NOTIFYs until closed. On failure it logs and returns nil: a restarted
// router is then noticed by the periodic lookup (Config.UPnPCheck).
func (c *Client) listenSSDP() *announceListener {
	lc := net.ListenConfig{Control: reuseControl}
	pc, err := lc.ListenPacket(context.Background(), "udp4", c.ssdpAddr.String())
	if err != nil {
		c.logf("portmap: not listening for SSDP NOTIFYs: %v (a UPnP IGD restart is noticed by the lookup every %v)", err, c.upnpCheck)
		return nil
	}
	if c.ssdpAddr.Addr().IsMulticast() {
		p := ipv4.NewPacketConn(pc)
		group := &net.UDPAddr{IP: net.IP(c.ssdpAddr.Addr().AsSlice())}
		ifs, _ := net.Interfaces()
		for i := range ifs {
			if ifs[i].Flags&net.FlagUp != 0 && ifs[i].Flags&net.FlagMulticast != 0 && ifs[i].Flags&net.FlagLoopback == 0 {
				p.JoinGroup(&ifs[i], group) // an interface without IPv4 fails: no matter
			}
		}
	}
	l := &announceListener{conn: pc.(*net.UDPConn)}
	c.mu.Lock()
	c.ssdpBound = l.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	c.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		c.readNotifies(l.conn)
	}()
	return l
}

// ssdpNotify is what this package reads of an SSDP NOTIFY.
type ssdpNotify struct {
	alive    bool   // NTS: ssdp:alive (or ssdp:update)
	location string // LOCATION
	bootID   string // BOOTID.UPNP.ORG; "" before UPnP 1.1
}

// parseNotify parses an SSDP NOTIFY (an HTTP request over UDP: "NOTIFY *
// HTTP/1.1" and headers). Anything else, M-SEARCHes included, reports
// false.
func parseNotify(b []byte) (ssdpNotify, bool) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
	if err != nil || req.Method != "NOTIFY" {
		return ssdpNotify{}, false
	}
	nts := strings.ToLower(strings.TrimSpace(req.Header.Get("NTS")))
	return ssdpNotify{
		alive:    nts == "ssdp:alive" || nts == "ssdp:update",
		location: strings.TrimSpace(req.Header.Get("LOCATION")),
		bootID:   strings.TrimSpace(req.Header.Get("BOOTID.UPNP.ORG")),
	}, true
}

// readNotifies reads SSDP datagrams until the socket is closed. A
// NOTIFY ssdp:alive from the current gateway whose LOCATION or BOOTID
// differs from those of the UPnP IGD mapping held nudges Run to look
// the mapping up (at the new LOCATION).
func (c *Client) readNotifies(conn *net.UDPConn) {
	buf := make([]byte, 4096)
	errs := 0
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errs++; errs >= maxReadErrors {
				c.logf("portmap: not listening for SSDP NOTIFYs any more: %v", err)
				return
			}
			continue
		}
		errs = 0
		nt, ok := parseNotify(buf[:n])
		if !ok || !nt.alive || nt.location == "" {
			continue
		}
		loc, err := url.Parse(nt.location)
		if err != nil {
			continue
		}
		c.mu.Lock()
		gw := c.gateway
		held := c.upnpLocation
		fromGW := gw.IsValid() && from.Addr().Unmap() == gw
		onGW := false
		if a, err := netip.ParseAddr(loc.Hostname()); err == nil && a.Unmap() == gw {
			onGW = true
		}
		changed := fromGW && onGW && held != "" &&
			(nt.location != held || nt.bootID != "" && c.upnpBoot != "" && nt.bootID != c.upnpBoot)
		if fromGW && nt.bootID != "" {
			c.upnpBoot = nt.bootID
		}
		if changed {
			c.upnpLocation = nt.location // its repeats are no news
			c.upnpNotified = loc
		}
		c.mu.Unlock()
		if !changed {
			continue
		}
		c.logf("portmap: SSDP NOTIFY from %v (boot %s, %s): the UPnP IGD restarted; checking the mapping", gw, nt.bootID, nt.location)
		select {
		case c.announced <- struct{}{}:
		default:
		}
	}
}
