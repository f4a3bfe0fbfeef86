package portmap

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// igdAt returns a discoverIGD that skips SSDP and reads the device
// description at *loc (under mu): the fake router's.
func igdAt(mu *sync.Mutex, loc **url.URL) func(ctx context.Context, gw netip.Addr) (*igdService, error) {
	return func(ctx context.Context, gw netip.Addr) (*igdService, error) {
		mu.Lock()
		u := *loc
		mu.Unlock()
		svc, err := igdByURL(ctx, u)
		if err != nil {
			var oe *net.OpError
			if errors.As(err, &oe) || strings.Contains(err.Error(), "connection refused") {
				return nil, &NoNATPMPError{Gateway: gw, Err: err, Protocols: []Protocol{ProtoUPnP}}
			}
			return nil, err
		}
		return svc, nil
	}
}

// startUPnP runs a Client against the fake router g with mod's Config
// (UPnP IGD alone unless mod says otherwise).
func startUPnP(t *testing.T, g *fakeIGD, mod func(*Config)) *harness {
	t.Helper()
	var mu sync.Mutex
	loc := g.url()
	return startC(t, nil, func(c *Config) {
		c.Protocols = []Protocol{ProtoUPnP}
		c.Gateway = func() (netip.Addr, error) { return g.addr, nil }
		if mod != nil {
			mod(c)
		}
	}, func(c *Client) { c.discoverIGD = igdAt(&mu, &loc) })
}

func TestUPnPMapping(t *testing.T) {
	t.Parallel()
	for _, version := range []int{1, 2} {
		t.Run("WANIPConnection:"+string(rune('0'+version)), func(t *testing.T) {
			t.Parallel()
			g := newFakeIGD(t, version)
			h := startUPnP(t, g, nil)
			h.waitCheck()
			m := h.change()
			want := netip.AddrPortFrom(testExternal, 4500)
			if m.External != want || m.Protocol != ProtoUPnP || m.Lifetime != time.Hour || m.Err != nil || m.Public || m.Gateway != g.addr {
				t.Fatalf("mapping %+v, want %v by UPnP IGD for 1h", m, want)
			}
			if d := m.GoodUntil.Sub(m.RenewAt); d != 30*time.Minute {
				t.Errorf("renewal %v before the lease ends, want half of it", d)
			}
			if fm, ok := g.mapping(4500); !ok || fm != (fakeIGDMapping{internal: 4500, client: testLocal.String(), lease: 3600}) {
				t.Errorf("router holds %+v, %v", fm, ok)
			}
			if !h.logged("WANIPConnection:" + string(rune('0'+version))) {
				t.Error("the service's version is not logged")
			}
			if err := h.stop(); err != nil {
				t.Error(err)
			}
			if _, ok := g.mapping(4500); ok {
				t.Error("mapping not deleted on stop")
			}
			if got, want := g.log(), []string{"GetExternalIPAddress", "AddPortMapping", "DeletePortMapping"}; !slices.Equal(got, want) {
				t.Errorf("actions %v, want %v", got, want)
			}
		})
	}
}

// TestUPnPRenewal: the lease is renewed at half its length with
// AddPortMapping again; lookups in between, none here (the lease is
// shorter than the lookup interval).
func TestUPnPRenewal(t *testing.T) {
	t.Parallel()
	g := newFakeIGD(t, 1)
	h := startUPnP(t, g, func(c *Config) { c.Lifetime = 2 * time.Second })
	h.waitCheck()
	h.change()
	t0 := time.Now()
	h.waitCheck()
	if d := time.Since(t0); d < 800*time.Millisecond || d > 3*time.Second {
		t.Errorf("renewed after %v, want 1 s (half the lease)", d)
	}
	h.noChange()
	if got, want := g.log(), []string{"GetExternalIPAddress", "AddPortMapping", "GetExternalIPAddress", "AddPortMapping"}; !slices.Equal(got, want) {
		t.Errorf("actions %v, want %v", got, want)
	}
}

// TestUPnPPermanentLease: a router that takes only lease 0 (725) gets a
// permanent mapping, looked up now and then, and deleted on stop.
func TestUPnPPermanentLease(t *testing.T) {
	t.Parallel()
	g := newFakeIGD(t, 2)
	g.set(func(g *fakeIGD) { g.permanent = true })
	h := startUPnP(t, g, func(c *Config) { c.UPnPCheck = 300 * time.Millisecond })
	h.waitCheck()
	m := h.change()
	if !m.Valid() || m.Lifetime != 0 || !m.GoodUntil.IsZero() || !strings.Contains(m.String(), "permanent") {
		t.Fatalf("mapping %+v (%v), want a permanent one", m, m)
	}
	if fm, ok := g.mapping(4500); !ok || fm.lease != 0 {
		t.Errorf("router holds %+v, %v", fm, ok)
	}
	h.waitCheck() // a lookup
	h.noChange()
	h.stop()
	if _, ok := g.mapping(4500); ok {
		t.Error("permanent mapping not deleted on stop")
	}
	if got := g.log(); !slices.Equal(got, []string{"GetExternalIPAddress", "AddPortMapping", "AddPortMapping",
		"GetExternalIPAddress", "GetSpecificPortMappingEntry", "DeletePortMapping"}) {
		t.Errorf("actions %v", got)
	}
}

// TestUPnPRebootNoticed: the router forgets its mappings (a restart);
// the periodic lookup notices within its interval, the mapping is added
// again, and the Change says Reboot.
func TestUPnPRebootNoticed(t *testing.T) {
	t.Parallel()
	g := newFakeIGD(t, 1)
	h := startUPnP(t, g, func(c *Config) { c.UPnPCheck = 300 * time.Millisecond })
	h.waitCheck()
	first := h.change()
	h.waitCheck() // a lookup: all is well
	h.noChange()
	g.reboot()
	t0 := time.Now()
	h.waitCheck()
	m := h.change()
	if d := time.Since(t0); d > time.Second {
		t.Errorf("noticed %v after the reboot, want within the 300 ms interval", d)
	}
	if !m.Reboot || m.External != first.External {
		t.Errorf("after the reboot %+v, want %v again with Reboot", m, first.External)
	}
	if _, ok := g.mapping(4500); !ok {
		t.Error("mapping not added again")
	}
	if !h.logged("lost its mappings") {
		t.Error("reboot not logged")
	}
}

// TestUPnPConflict: the port is another host's: IGD:2 lets the router
// pick (AddAnyPortMapping), IGD:1 tries random ports.
func TestUPnPConflict(t *testing.T) {
	t.Parallel()
	for _, version := range []int{1, 2} {
		t.Run("WANIPConnection:"+string(rune('0'+version)), func(t *testing.T) {
			t.Parallel()
			g := newFakeIGD(t, version)
			g.set(func(g *fakeIGD) {
				g.mappings[4500] = fakeIGDMapping{internal: 4500, client: "192.168.1.99", lease: 3600}
			})
			h := startUPnP(t, g, nil)
			h.waitCheck()
			m := h.change()
			if !m.Valid() || m.External.Port() == 4500 {
				t.Fatalf("mapping %+v, want another port", m)
			}
			if fm, ok := g.mapping(m.External.Port()); !ok || fm.client != testLocal.String() {
				t.Errorf("router holds %+v, %v at %d", fm, ok, m.External.Port())
			}
			if version == 2 && m.External.Port() != 4501 {
				t.Errorf("IGD:2 port %d, want the router's choice, 4501", m.External.Port())
			}
		})
	}
}

// TestUPnPAfterPCPAndNATPMP: a router with nothing on port 5351 (ICMP
// port unreachable) and a UPnP IGD: the default order ends with UPnP,
// at once.
func TestUPnPAfterPCPAndNATPMP(t *testing.T) {
	t.Parallel()
	g := newFakeIGD(t, 2)
	t0 := time.Now()
	h := startUPnP(t, g, func(c *Config) { c.Protocols = nil })
	h.waitCheck()
	m := h.change()
	if d := time.Since(t0); d > time.Second {
		t.Errorf("took %v", d)
	}
	if m.Protocol != ProtoUPnP || !m.Valid() {
		t.Fatalf("mapping %+v, want UPnP IGD", m)
	}
	if !h.logged("answers UPnP IGD") {
		t.Error("the protocol chosen is not logged")
	}
}

// TestUPnPNone: no IGD found (and nothing on 5351): a public network.
func TestUPnPNone(t *testing.T) {
	t.Parallel()
	gw := nextLoopback()
	h := startC(t, nil, func(c *Config) {
		c.Protocols = nil
		c.Gateway = func() (netip.Addr, error) { return gw, nil }
	}, func(c *Client) {
		c.discoverIGD = func(ctx context.Context, gw netip.Addr) (*igdService, error) {
			return nil, &NoNATPMPError{Gateway: gw, Err: ErrNoAnswer, Protocols: []Protocol{ProtoUPnP}}
		}
	})
	h.waitCheck()
	m := h.change()
	if !m.Public || !IsNoNATPMP(m.Err) || !strings.Contains(m.Err.Error(), "no PCP, NAT-PMP or UPnP IGD at "+gw.String()) {
		t.Errorf("mapping %+v (%v), want public, none of the three", m, m.Err)
	}
}

// TestUPnPRediscover: the router's HTTP server moves (miniupnpd picks a
// new port at each start): the next check finds it again.
func TestUPnPRediscover(t *testing.T) {
	t.Parallel()
	g := newFakeIGD(t, 1)
	var mu sync.Mutex
	loc := g.url()
	h := startC(t, nil, func(c *Config) {
		c.Protocols = []Protocol{ProtoUPnP}
		c.Gateway = func() (netip.Addr, error) { return g.addr, nil }
	}, func(c *Client) { c.discoverIGD = igdAt(&mu, &loc) })
	h.waitCheck()
	h.change()
	g.srv.Close()
	g2 := newFakeIGD(t, 1)
	mu.Lock()
	loc = g2.url()
	mu.Unlock()
	h.c.Refresh()
	h.waitCheck()
	h.noChange() // the same address and port
	if _, ok := g2.mapping(4500); !ok {
		t.Errorf("no mapping on the moved router: %v", g2.log())
	}
}

// TestUPnPCancel: Run returns soon after ctx ends while the router does
// not answer an action.
func TestUPnPCancel(t *testing.T) {
	t.Parallel()
	g := newFakeIGD(t, 1)
	hang := make(chan struct{})
	defer close(hang)
	g.set(func(g *fakeIGD) { g.hang = hang })
	h := startUPnP(t, g, nil)
	time.Sleep(200 * time.Millisecond)
	t0 := time.Now()
	h.stop()
	if d := time.Since(t0); d > time.Second {
		t.Errorf("Run returned %v after ctx ended", d)
	}
}

// ssdpTo returns the address of the Client's SSDP socket.
func (h *harness) ssdpTo() netip.AddrPort {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	if !h.c.ssdpBound.IsValid() {
		h.t.Fatal("no SSDP socket")
	}
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), h.c.ssdpBound.Port())
}

// TestUPnPNotify: a router that restarted says so in an SSDP NOTIFY (a
// new BOOTID, or a new LOCATION: miniupnpd's HTTP port changes at each
// start); the mapping is looked up at once, found gone, added again (at
// the new LOCATION, with no SSDP search), and the Change says Reboot.
// NOTIFYs from elsewhere, and repeats, are ignored.
func TestUPnPNotify(t *testing.T) {
	t.Parallel()
	g := newFakeIGD(t, 2)
	var mu sync.Mutex
	loc := g.url()
	searches := 0
	h := startC(t, nil, func(c *Config) {
		c.Protocols = []Protocol{ProtoUPnP}
		c.Gateway = func() (netip.Addr, error) { return g.addr, nil }
	}, func(c *Client) {
		find := igdAt(&mu, &loc)
		c.discoverIGD = func(ctx context.Context, gw netip.Addr) (*igdService, error) {
			mu.Lock()
			searches++
			mu.Unlock()
			return find(ctx, gw)
		}
	})
	h.waitCheck()
	first := h.change()
	to := h.ssdpTo()

	g.notify(to, 1, false) // the boot counter, first heard
	g.notify(to, 2, true)  // from another address
	h.noCheck(300 * time.Millisecond)

	// Restarted, same description URL, new BOOTID.
	g.reboot()
	t0 := time.Now()
	g.notify(to, 2, false)
	h.waitCheck()
	m := h.change()
	if d := time.Since(t0); d > time.Second || !m.Reboot || m.External != first.External {
		t.Fatalf("%v after the NOTIFY: %+v, want %v again with Reboot", time.Since(t0), m, first.External)
	}
	g.notify(to, 2, false) // a repeat
	h.noCheck(300 * time.Millisecond)

	// Restarted on a new HTTP port, its mappings gone.
	g.srv.Close()
	g2 := newFakeIGDAt(t, 2, g.addr)
	g2.notify(to, 3, false)
	h.waitCheck()
	m = h.change()
	if !m.Reboot || m.External != first.External {
		t.Fatalf("after the move: %+v, want %v again with Reboot", m, first.External)
	}
	if _, ok := g2.mapping(4500); !ok {
		t.Errorf("no mapping on the restarted router: %v", g2.log())
	}
	mu.Lock()
	defer mu.Unlock()
	if searches != 1 {
		t.Errorf("%d searches, want 1: a NOTIFY's LOCATION needs none", searches)
	}
}

// TestDoubleNATSkipsUPnP: a gateway whose NAT-PMP answers "network
// failure" sits behind another NAT; its UPnP IGD (were there one) would
// give a mapping just as useless, so it is not searched for, and the
// daemon learns at once that it must ask the server.
func TestDoubleNATSkipsUPnP(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.addrResult = uint16(ResultNetworkFailure) })
	var searched atomic.Bool
	h := startC(t, f, func(c *Config) { c.Protocols = []Protocol{ProtoNATPMP, ProtoUPnP} }, func(c *Client) {
		c.discoverIGD = func(ctx context.Context, gw netip.Addr) (*igdService, error) {
			searched.Store(true)
			return nil, &NoNATPMPError{Gateway: gw, Err: ErrNoAnswer, Protocols: []Protocol{ProtoUPnP}}
		}
	})
	h.waitCheck()
	m := h.change()
	if !IsDoubleNAT(m.Err) || m.Valid() {
		t.Errorf("mapping %+v (%v), want a double NAT", m, m.Err)
	}
	if searched.Load() {
		t.Error("the UPnP IGD was searched for behind a gateway that said it has no external address")
	}
}
