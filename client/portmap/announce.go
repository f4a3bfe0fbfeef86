package portmap

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultAnnounceAddr is where gateways multicast NAT-PMP and PCP
// announcements (RFC 6886 §3.2.1, RFC 6887 §8.5): the all-hosts group,
// port 5350.
var DefaultAnnounceAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{224, 0, 0, 1}), DefaultAnnouncePort)

const maxReadErrors = 10 // consecutive read errors before the listener gives up

// announceListener is the socket bound to the announcement address and the
// goroutine that reads it. Run's goroutine starts and closes it.
type announceListener struct {
	conn *net.UDPConn
	wg   sync.WaitGroup
}

// listen binds the announcement socket and starts reading it. It binds
// the group address itself, not 0.0.0.0:5350, with SO_REUSEADDR and
// SO_REUSEPORT so other clients on the host can listen too (spec §1, §9.2).
// No IP_ADD_MEMBERSHIP is needed: Linux puts every multicast-capable
// interface in 224.0.0.1. On failure it logs and returns nil: announcements
// only speed things up, and the next renewal notices everything they would
// have said.
func (c *Client) listen() *announceListener {
	lc := net.ListenConfig{Control: reuseControl}
	pc, err := lc.ListenPacket(context.Background(), "udp4", c.announceAddr.String())
	if err != nil {
		c.logf("portmap: not listening for NAT-PMP announcements: %v (a NAT reboot will be noticed at the next renewal)", err)
		return nil
	}
	l := &announceListener{conn: pc.(*net.UDPConn)}
	c.mu.Lock()
	c.announceBound = l.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	c.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		c.readAnnouncements(l.conn)
	}()
	return l
}

// close stops the listener and waits for its goroutine. It may be called
// on a nil listener.
func (l *announceListener) close() {
	if l == nil {
		return
	}
	l.conn.Close()
	l.wg.Wait()
}

// readAnnouncements reads announcements until the socket is closed. One
// from the current gateway that parses (a NAT-PMP external address
// announcement or a PCP ANNOUNCE) nudges Run to re-ask the gateway. Its
// contents are not trusted: Run verifies with requests of its own, and
// runs the epoch check on their responses.
//
// A gateway repeats each announcement up to ten times over about two
// minutes (RFC 6886 §3.2.1). A repeat (same kind, same address, an epoch
// that passes the epoch check against the previous copy, within
// repeatWindow) is dropped, so one announcement costs one re-check.
func (c *Client) readAnnouncements(conn *net.UDPConn) {
	const repeatWindow = 130 * time.Second
	buf := make([]byte, pcpMaxLen+4)
	errs := 0
	var (
		prev     announcement
		prevFrom netip.Addr
		prevAt   time.Time
		epochs   epochTracker
	)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errs++; errs >= maxReadErrors {
				c.logf("portmap: not listening for NAT-PMP announcements any more: %v", err)
				return
			}
			continue
		}
		errs = 0
		c.mu.Lock()
		gw := c.gateway
		c.mu.Unlock()
		if !gw.IsValid() || from.Addr().Unmap() != gw {
			continue
		}
		a, ok := parseAnnouncement(buf[:n])
		if !ok {
			continue
		}
		now := c.now()
		if gw != prevFrom || a.pcp != prev.pcp {
			epochs = epochTracker{}
		}
		lost := epochs.observe(a.epoch, now)
		repeat := !lost && gw == prevFrom && a.pcp == prev.pcp && a.external == prev.external && now.Sub(prevAt) < repeatWindow
		prev, prevFrom, prevAt = a, gw, now
		if repeat {
			continue
		}
		if a.pcp {
			c.logf("portmap: PCP ANNOUNCE from %v (epoch %d); re-checking", gw, a.epoch)
		} else {
			c.mu.Lock()
			c.announcedExt = a.external
			c.mu.Unlock()
			select {
			case c.pmpAnnounced <- struct{}{}:
			default:
			}
			c.logf("portmap: NAT-PMP announcement from %v (external %v, epoch %d); re-checking", gw, a.external, a.epoch)
		}
		select {
		case c.announced <- struct{}{}:
		default: // one is already pending
		}
	}
}
