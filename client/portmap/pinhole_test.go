package portmap

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// pcp6Server is a PCP server on the IPv6 loopback that opens pinholes as
// an IPv6 firewall does (RFC 6887 §6.1): the external address and port
// of a MAP are the internal ones.
type pcp6Server struct {
	conn *net.UDPConn
	mu   sync.Mutex
	reqs []fakePCPReq
}

func startPCP6(t *testing.T) *pcp6Server {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	s := &pcp6Server{conn: c}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1100)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := buf[:n]
			if n < pcpMapLen || req[1] != pcpOpMap {
				continue
			}
			r := fakePCPReq{
				nonce:     [12]byte(req[24:36]),
				internal:  binary.BigEndian.Uint16(req[40:42]),
				suggested: binary.BigEndian.Uint16(req[42:44]),
				lifetime:  binary.BigEndian.Uint32(req[4:8]),
				client:    netip.AddrFrom16([16]byte(req[8:24])),
			}
			s.mu.Lock()
			s.reqs = append(s.reqs, r)
			s.mu.Unlock()
			b := append([]byte(nil), req[:pcpMapLen]...)
			b[1] |= 0x80
			b[3] = 0
			binary.BigEndian.PutUint32(b[8:12], 77) // epoch
			clear(b[12:24])
			binary.BigEndian.PutUint16(b[42:44], r.internal)
			copy(b[44:60], req[8:24])
			c.WriteToUDPAddrPort(b, from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return s
}

func (s *pcp6Server) requests() []fakePCPReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]fakePCPReq(nil), s.reqs...)
}

func (s *pcp6Server) port() uint16 { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

// runPinhole runs a Pinhole for port 4500 on ::1 against gw until the
// test ends, and returns it with a stop that waits for Run.
func runPinhole(t *testing.T, gw netip.AddrPort, addr func() (netip.Addr, bool), lifetime time.Duration) (*Pinhole, func()) {
	t.Helper()
	p := NewPinhole(PinholeConfig{
		InternalPort: 4500, Address: addr, Lifetime: lifetime, Logf: t.Logf,
		Gateway: func() (netip.Addr, error) { return gw.Addr(), nil },
		pcpIRT:  100 * time.Millisecond, pcpPort: gw.Port(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return p, stop
}

func waitPinhole(t *testing.T, p *Pinhole, what string, ok func(PinholeState) bool) PinholeState {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		st := p.State()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s: state %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPinhole: a MAP request from the host's global address, for that
// address and the tunnel port, with the lifetime asked; the pinhole is
// open as granted, renewed at half its lifetime with the same nonce, and
// deleted (lifetime 0) when Run returns.
func TestPinhole(t *testing.T) {
	s := startPCP6(t)
	lo := netip.IPv6Loopback()
	p, stop := runPinhole(t, netip.AddrPortFrom(lo, s.port()), func() (netip.Addr, bool) { return lo, true }, 2*time.Second)
	st := waitPinhole(t, p, "open pinhole", func(st PinholeState) bool { return st.Open })
	if st.External != netip.AddrPortFrom(lo, 4500) || st.Lifetime != 2*time.Second || st.Gateway != lo {
		t.Errorf("state %+v, want [::1]:4500 open for 2s at ::1", st)
	}
	waitFor(t, "a renewal", func() bool { return len(s.requests()) >= 2 })
	stop()
	reqs := s.requests()
	last := reqs[len(reqs)-1]
	for i, r := range reqs {
		if r.client != lo || r.internal != 4500 || r.suggested != 4500 || r.nonce != reqs[0].nonce {
			t.Errorf("request %d: %+v", i, r)
		}
		if i < len(reqs)-1 && r.lifetime != 2 {
			t.Errorf("request %d asks a lifetime of %d s, want 2", i, r.lifetime)
		}
	}
	if last.lifetime != 0 {
		t.Errorf("the last request asks %d s, want 0 (the deletion)", last.lifetime)
	}
	if p.State().Open {
		t.Error("still open after Run returned")
	}
}

// TestPinholeNoPCP: a gateway with nothing on the PCP port (an ICMP port
// unreachable) opens no pinhole, and the state says why; a host without
// a global address asks nothing.
func TestPinholeNoPCP(t *testing.T) {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	closed := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	lo := netip.IPv6Loopback()
	p, _ := runPinhole(t, closed, func() (netip.Addr, bool) { return lo, true }, time.Hour)
	st := waitPinhole(t, p, "a failure", func(st PinholeState) bool { return st.Err != nil && IsNoNATPMP(st.Err) })
	if st.Open {
		t.Errorf("state %+v", st)
	}

	q, _ := runPinhole(t, closed, func() (netip.Addr, bool) { return netip.Addr{}, false }, time.Hour)
	st = waitPinhole(t, q, "no address", func(st PinholeState) bool { return errors.Is(st.Err, ErrNoGlobalIPv6) })
	if st.Open {
		t.Errorf("state %+v", st)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
