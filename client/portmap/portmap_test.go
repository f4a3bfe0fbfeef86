package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	testLocal    = netip.MustParseAddr("192.168.1.10")
	testExternal = netip.MustParseAddr("198.51.100.7")
)

// harness runs a Client against a fakeNAT.
type harness struct {
	t      *testing.T
	c      *Client
	f      *fakeNAT
	checks chan struct{} // one per finished check
	cancel context.CancelFunc
	done   chan error
	once   sync.Once

	mu   sync.Mutex // guards logs
	logs []string
}

// start runs a Client for port 4500 with the fake as its gateway and
// 192.168.1.10 as its address, speaking NAT-PMP alone (the tests of PCP,
// UPnP IGD and the choice between them set Protocols in mod). Requests time out after 2 s (go-nat-pmp
// resends at 250 ms, 750 ms), retries are an hour away, and there is no
// random wait after state loss, so the fake's counts are exact; mod
// changes that.
func start(t *testing.T, f *fakeNAT, mod func(*Config)) *harness {
	t.Helper()
	return startC(t, f, mod, nil)
}

// startC is start with cmod to change the Client (its unexported knobs)
// before Run starts.
func startC(t *testing.T, f *fakeNAT, mod func(*Config), cmod func(*Client)) *harness {
	t.Helper()
	h := &harness{t: t, f: f, checks: make(chan struct{}, 100), done: make(chan error, 1)}
	cfg := Config{
		InternalPort: 4500,
		LocalAddr:    func() (netip.Addr, error) { return testLocal, nil },
		AnnounceAddr: netip.MustParseAddrPort("127.0.0.1:0"),
		SSDPAddr:     netip.MustParseAddrPort("127.0.0.1:0"), // no multicast group joined

		RequestTimeout: 2 * time.Second,
		RetryMin:       time.Hour,
		RetryMax:       time.Hour,
		StateLossDelay: -1,
		Protocols:      []Protocol{ProtoNATPMP},
		Logf: func(format string, args ...any) {
			s := fmt.Sprintf(format, args...)
			h.mu.Lock()
			h.logs = append(h.logs, s)
			h.mu.Unlock()
			t.Log(s)
		},
	}
	if f != nil {
		cfg.Gateway = func() (netip.Addr, error) { return f.addr.Addr(), nil }
	}
	if mod != nil {
		mod(&cfg)
	}
	h.c = New(cfg)
	if cmod != nil {
		cmod(h.c)
	}
	h.c.checkDone = func() {
		select {
		case h.checks <- struct{}{}:
		default:
			t.Error("too many checks")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.c.Run(ctx) }()
	t.Cleanup(func() { h.stop() })
	return h
}

// waitCheck waits for the Client to finish a check.
func (h *harness) waitCheck() {
	h.t.Helper()
	select {
	case <-h.checks:
	case <-time.After(10 * time.Second):
		h.t.Fatal("no check")
	}
}

// noCheck fails if a check finishes within d.
func (h *harness) noCheck(d time.Duration) {
	h.t.Helper()
	select {
	case <-h.checks:
		h.t.Fatal("unexpected check")
	case <-time.After(d):
	}
}

// change returns the next Mapping from Changes.
func (h *harness) change() Mapping {
	h.t.Helper()
	select {
	case m, ok := <-h.c.Changes():
		if !ok {
			h.t.Fatal("Changes closed")
		}
		return m
	case <-time.After(10 * time.Second):
		h.t.Fatal("no change")
	}
	return Mapping{}
}

// noChange fails if Changes holds a Mapping.
func (h *harness) noChange() {
	h.t.Helper()
	select {
	case m := <-h.c.Changes():
		h.t.Fatalf("unexpected change: %v", m)
	default:
	}
}

// stop cancels Run and returns what it returned.
func (h *harness) stop() error {
	h.t.Helper()
	var err error
	h.once.Do(func() {
		start := time.Now()
		h.cancel()
		select {
		case err = <-h.done:
		case <-time.After(10 * time.Second):
			h.t.Fatal("Run did not return")
		}
		if d := time.Since(start); d > 5*time.Second {
			h.t.Errorf("Run took %v to return", d)
		}
	})
	return err
}

func (h *harness) logged(substr string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.logs {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

// announceTo returns the address of the Client's announcement socket.
func (h *harness) announceTo() netip.AddrPort {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	if !h.c.announceBound.IsValid() {
		h.t.Fatal("no announcement socket")
	}
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), h.c.announceBound.Port())
}

func checkCounts(t *testing.T, f *fakeNAT, want fakeCounts) {
	t.Helper()
	if got := f.counts(); got != want {
		t.Fatalf("fake NAT received %+v, want %+v", got, want)
	}
}

func TestMapping(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.maxLifetime = 1200 })
	h := start(t, f, nil)
	h.waitCheck()
	m := h.change()
	want := netip.AddrPortFrom(testExternal, 4500)
	if m.External != want || m.Internal != 4500 || m.Public || m.DoubleNAT || m.Err != nil || m.Gateway != f.addr.Addr() {
		t.Fatalf("mapping %+v, want External %v, Internal 4500, NAT-PMP", m, want)
	}
	if m.Lifetime != 1200*time.Second {
		t.Errorf("Lifetime %v, want the granted 20m0s", m.Lifetime)
	}
	if d := m.RenewAt.Sub(m.GoodUntil); d != -600*time.Second {
		t.Errorf("RenewAt is %v before GoodUntil, want half the lifetime", -d)
	}
	if m.Epoch < 1000 || m.Epoch > 1010 {
		t.Errorf("Epoch %d, want about 1000", m.Epoch)
	}
	if cur, ok := h.c.Current(); !ok || !same(cur, m) {
		t.Errorf("Current() = %v, %v; want %v, true", cur, ok, m)
	}
	checkCounts(t, f, fakeCounts{addr: 1, mapping: 1})
	if got, want := f.log(), []fakeMapReq{{op: 1, internal: 4500, suggested: 4500, lifetime: 3600}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("mapping requests %v, want %v", got, want)
	}
	h.noChange()
}

func TestRenewal(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.taken[4500] = true }) // so the granted port is not the one asked for
	h := start(t, f, func(c *Config) { c.Lifetime = 2 * time.Second })
	h.waitCheck()
	m := h.change()
	if m.External.Port() != 40000 {
		t.Fatalf("mapping %v, want port 40000", m)
	}
	t0 := time.Now()
	h.waitCheck() // the renewal, after half of 2 s
	if d := time.Since(t0); d < 700*time.Millisecond {
		t.Errorf("renewed after %v, want about 1 s", d)
	}
	checkCounts(t, f, fakeCounts{addr: 2, mapping: 2})
	want := []fakeMapReq{
		{op: 1, internal: 4500, suggested: 4500, lifetime: 2},
		{op: 1, internal: 4500, suggested: 40000, lifetime: 2}, // the granted port
	}
	if got := f.log(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("mapping requests %v, want %v", got, want)
	}
	h.noChange()
	if cur, _ := h.c.Current(); cur.GoodUntil.Before(m.GoodUntil.Add(500 * time.Millisecond)) {
		t.Errorf("GoodUntil not extended by the renewal: %v, was %v", cur.GoodUntil, m.GoodUntil)
	}
}

func TestRebootAtRenewal(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.setEpoch(10000)
	h := start(t, f, func(c *Config) { c.Lifetime = 2 * time.Second })
	h.waitCheck()
	first := h.change()
	f.reboot()
	if _, ok := f.mapping(4500); ok {
		t.Fatal("fake kept the mapping")
	}
	h.waitCheck() // the renewal finds the epoch restarted
	m := h.change()
	if m.External != first.External || m.Epoch > 5 {
		t.Errorf("after reboot %v (epoch %d), want %v with the new epoch", m, m.Epoch, first.External)
	}
	if first.Reboot || !m.Reboot {
		t.Errorf("Reboot: %v before, %v after the reboot; want false, true", first.Reboot, m.Reboot)
	}
	if _, ok := f.mapping(4500); !ok {
		t.Error("mapping not recreated")
	}
	if !h.logged("lost its mappings") {
		t.Error("reboot not logged")
	}
	checkCounts(t, f, fakeCounts{addr: 2, mapping: 2})
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestEpochClockRule checks that a reboot is found by RFC 6886 §3.6's
// rule, not by a decrease: an epoch that grew, but by much less than 7/8
// of the time our clock says has passed, is a reboot.
func TestEpochClockRule(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.setEpoch(5000)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	h := start(t, f, func(c *Config) { c.Now = clock.Now })
	h.waitCheck()
	h.change()

	// 1000 s later by both clocks: no reboot, nothing to say.
	clock.Advance(1000 * time.Second)
	f.setEpoch(6000)
	h.c.Refresh()
	h.waitCheck()
	h.noChange()
	if cur, _ := h.c.Current(); cur.Epoch < 6000 {
		t.Errorf("Epoch %d, want about 6000", cur.Epoch)
	}

	// 1000 s later, but the gateway's epoch grew by only 100 s: it
	// rebooted 100 s ago (and has got as far as 6100 since).
	clock.Advance(1000 * time.Second)
	f.setEpoch(6100)
	h.c.Refresh()
	h.waitCheck()
	m := h.change()
	if m.External != netip.AddrPortFrom(testExternal, 4500) {
		t.Errorf("after reboot %v", m)
	}
	if !h.logged("lost its mappings") {
		t.Error("reboot not logged")
	}
	checkCounts(t, f, fakeCounts{addr: 3, mapping: 3})
}

func TestEpochTracker(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		last    uint32
		elapsed time.Duration
		next    uint32
		lost    bool
	}{
		{100, 0, 100, false},
		{100, 0, 98, false},                 // within the 2 s slack
		{100, 0, 97, true},                  // a decrease by more than the slack
		{100, 80 * time.Second, 168, false}, // expected 100 + 70 = 170; 168 + 2 is not below it
		{100, 80 * time.Second, 167, true},
		{100, 80 * time.Second, 101, true}, // grew, but far too little
		{100, 80 * time.Second, 500, false},
		{0, 3 * time.Second, 0, true},
		{100, -time.Hour, 99, false}, // a clock going backwards counts as no time
		{4294967295, time.Hour, 4294967295, true},
	} {
		var e epochTracker
		if e.observe(tc.last, t0) {
			t.Fatal("first observation reported a loss")
		}
		if got := e.observe(tc.next, t0.Add(tc.elapsed)); got != tc.lost {
			t.Errorf("last %d, %v later %d: lost = %v, want %v", tc.last, tc.elapsed, tc.next, got, tc.lost)
		}
	}
}

func TestAnnouncements(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	h := start(t, f, nil)
	h.waitCheck()
	h.change()
	to := h.announceTo()

	// Junk, and a good announcement from the wrong address: ignored.
	for _, b := range [][]byte{
		{}, {0}, {0, 128, 0, 0, 0, 0, 0, 1}, // short
		{0, 129, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, // a mapping response
		{0, 128, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0},             // an error
		{1, 128, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4},             // version 1
		{0, 0},                                             // a request
		make([]byte, 24),                                   // PCP-sized, version 0 request
		append([]byte{2, 0x81}, make([]byte, 58)...),       // PCP MAP response
		append([]byte{2, 0x80}, make([]byte, 21)...),       // PCP ANNOUNCE, 23 bytes
		append([]byte{2, 0x00}, make([]byte, 22)...),       // PCP ANNOUNCE request
	} {
		f.send(b, to)
	}
	f.set(func(f *fakeNAT) { f.external = netip.MustParseAddr("203.0.113.9") })
	f.sendStray(f.pmpAnnouncement(), to)
	h.noCheck(300 * time.Millisecond)
	checkCounts(t, f, fakeCounts{addr: 1, mapping: 1})

	// The new address, announced by the gateway: re-checked at once.
	f.send(f.pmpAnnouncement(), to)
	h.waitCheck()
	m := h.change()
	if want := netip.MustParseAddrPort("203.0.113.9:4500"); m.External != want {
		t.Errorf("after announcement %v, want %v", m, want)
	}
	checkCounts(t, f, fakeCounts{addr: 2, mapping: 2})

	// A repeat of the same announcement is not re-checked.
	f.send(f.pmpAnnouncement(), to)
	h.noCheck(300 * time.Millisecond)
	checkCounts(t, f, fakeCounts{addr: 2, mapping: 2})

	// miniupnpd after a restart: only a PCP ANNOUNCE.
	f.reboot()
	f.send(f.pcpAnnouncement(), to)
	h.waitCheck()
	m = h.change()
	if _, ok := f.mapping(4500); !ok || m.External.Port() != 4500 {
		t.Errorf("mapping not recreated after PCP ANNOUNCE: %v", m)
	}
	if !h.logged("lost its mappings") {
		t.Error("reboot not logged")
	}
	checkCounts(t, f, fakeCounts{addr: 3, mapping: 3})
}

// TestAnnouncementStateLossDelay checks that after an announcement the
// gateway is asked at once, but the lost mapping is recreated only after
// a random wait.
func TestAnnouncementStateLossDelay(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	h := start(t, f, func(c *Config) { c.StateLossDelay = 400 * time.Millisecond })
	h.waitCheck()
	h.change()
	f.reboot()
	t0 := time.Now()
	f.send(f.pcpAnnouncement(), h.announceTo())
	deadline := time.Now().Add(5 * time.Second)
	for f.counts().addr < 2 {
		if time.Now().After(deadline) {
			t.Fatal("announcement did not make the client ask")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := time.Since(t0); d > 300*time.Millisecond {
		t.Errorf("asked %v after the announcement, want at once", d)
	}
	h.waitCheck()
	h.change()
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("recreated after %v, want within the 400 ms delay", d)
	}
	checkCounts(t, f, fakeCounts{addr: 2, mapping: 2})
}

func TestResultCodes(t *testing.T) {
	t.Parallel()
	for code := ResultCode(1); code <= 5; code++ {
		for _, op := range []string{"external address", "map UDP"} {
			t.Run(fmt.Sprintf("%d/%s", code, op), func(t *testing.T) {
				t.Parallel()
				f := newFakeNAT(t)
				f.set(func(f *fakeNAT) {
					if op == "map UDP" {
						f.mapResult = uint16(code)
					} else {
						f.addrResult = uint16(code)
					}
				})
				h := start(t, f, nil)
				h.waitCheck()
				m := h.change()
				var re *ResultError
				if !errors.As(m.Err, &re) || re.Code != code || re.Op != op {
					t.Fatalf("Err = %v, want a *ResultError %q %v", m.Err, op, code)
				}
				if m.Valid() || m.Public {
					t.Errorf("mapping %+v, want none", m)
				}
				if _, ok := h.c.Current(); ok {
					t.Error("Current reports a usable mapping")
				}
				if got := IsDoubleNAT(m.Err); got != (code == ResultNetworkFailure) {
					t.Errorf("IsDoubleNAT = %v", got)
				}
				if got := h.logged("double NAT"); got != (code == ResultNetworkFailure) {
					t.Errorf("double NAT logged: %v", got)
				}
				want := fakeCounts{addr: 1}
				if op == "map UDP" {
					want.mapping = 1
				}
				checkCounts(t, f, want)
				h.stop()
				checkCounts(t, f, want) // a refused mapping is not deleted
			})
		}
	}
}

// TestResultThenRecovery checks that a refused mapping is retried with
// back-off and that a success then makes a Change.
func TestResultThenRecovery(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.mapResult = uint16(ResultOutOfResources) })
	h := start(t, f, func(c *Config) { c.RetryMin, c.RetryMax = 200*time.Millisecond, 400*time.Millisecond })
	h.waitCheck()
	if m := h.change(); m.Valid() || m.Err == nil {
		t.Fatalf("mapping %v, want none", m)
	}
	f.set(func(f *fakeNAT) { f.mapResult = 0 })
	h.waitCheck()
	if m := h.change(); !m.Valid() || m.Err != nil {
		t.Fatalf("mapping %v, want one", m)
	}
}

func TestDoubleNATHint(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.external = netip.MustParseAddr("100.64.1.2") })
	h := start(t, f, nil)
	h.waitCheck()
	m := h.change()
	if !m.Valid() || !m.DoubleNAT || m.Public {
		t.Errorf("mapping %+v, want a NAT-PMP mapping marked DoubleNAT", m)
	}
}

func TestNoAnswer(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.silent = true })
	t0 := time.Now()
	h := start(t, f, func(c *Config) { c.RequestTimeout = time.Second })
	h.waitCheck()
	m := h.change()
	if d := time.Since(t0); d < 900*time.Millisecond {
		t.Errorf("gave up after %v, want the 1 s request timeout", d)
	}
	if want := netip.AddrPortFrom(testLocal, 4500); !m.Public || m.External != want {
		t.Fatalf("mapping %v, want public %v", m, want)
	}
	var ne *NoNATPMPError
	if !errors.As(m.Err, &ne) || !errors.Is(m.Err, ErrNoAnswer) || ne.Gateway != f.addr.Addr() {
		t.Errorf("Err = %v, want a *NoNATPMPError with ErrNoAnswer", m.Err)
	}
	if cur, ok := h.c.Current(); !ok || !cur.Public {
		t.Errorf("Current() = %v, %v", cur, ok)
	}
	checkCounts(t, f, fakeCounts{addr: 3}) // go-nat-pmp's sends at 0, 250 and 750 ms

	// The gateway starts answering; Refresh forgets "no NAT-PMP".
	f.set(func(f *fakeNAT) { f.silent = false })
	h.c.Refresh()
	h.waitCheck()
	m = h.change()
	if m.Public || m.External != netip.AddrPortFrom(testExternal, 4500) {
		t.Errorf("after Refresh %v, want a NAT-PMP mapping", m)
	}
	checkCounts(t, f, fakeCounts{addr: 4, mapping: 1})
}

// TestNoAnswerAnnouncement checks that an announcement also ends "no
// NAT-PMP".
func TestNoAnswerAnnouncement(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.silent = true })
	h := start(t, f, func(c *Config) { c.RequestTimeout = 100 * time.Millisecond })
	h.waitCheck()
	if m := h.change(); !m.Public {
		t.Fatalf("mapping %v, want public", m)
	}
	f.set(func(f *fakeNAT) { f.silent = false })
	f.send(f.pmpAnnouncement(), h.announceTo())
	h.waitCheck()
	if m := h.change(); m.Public || !m.Valid() {
		t.Errorf("after announcement %v, want a NAT-PMP mapping", m)
	}
}

func TestRenewalUnanswered(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	h := start(t, f, func(c *Config) {
		c.Lifetime = 2 * time.Second
		c.RequestTimeout = 50 * time.Millisecond
		c.RetryMin, c.RetryMax = 300*time.Millisecond, 300*time.Millisecond
	})
	h.waitCheck()
	first := h.change()
	f.set(func(f *fakeNAT) { f.silent = true })
	h.waitCheck() // renewal at 1 s: unanswered, mapping kept
	h.noChange()
	if cur, ok := h.c.Current(); !ok || cur.External != first.External {
		t.Errorf("Current() = %v, %v; want the mapping kept", cur, ok)
	}
	// Retries every 300 ms until the mapping expires, 2 s after it was
	// made; then a public network.
	var m Mapping
	for i := 0; i < 10 && !m.Public; i++ {
		h.waitCheck()
		select {
		case m = <-h.c.Changes():
		default:
		}
	}
	if !m.Public || !IsNoNATPMP(m.Err) {
		t.Fatalf("after expiry %v, want public", m)
	}
	if !time.Now().After(first.GoodUntil) {
		t.Errorf("gave up the mapping before it expired at %v", first.GoodUntil)
	}
}

func TestPortUnreachable(t *testing.T) {
	t.Parallel()
	// A gateway address with nothing on port 5351: the kernel answers
	// ICMP port unreachable.
	gw := nextLoopback()
	t0 := time.Now()
	h := start(t, nil, func(c *Config) {
		c.Gateway = func() (netip.Addr, error) { return gw, nil }
		c.RequestTimeout = 10 * time.Second
	})
	h.waitCheck()
	m := h.change()
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("took %v, want an immediate give-up", d)
	}
	if !m.Public || !errors.Is(m.Err, syscall.ECONNREFUSED) || !IsNoNATPMP(m.Err) {
		t.Errorf("mapping %v, want public after port unreachable", m)
	}
	if !strings.Contains(m.Err.Error(), "port unreachable") {
		t.Errorf("Err = %q", m.Err)
	}
}

func TestPublicAddress(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	pub := netip.MustParseAddr("203.0.113.5")
	h := start(t, f, func(c *Config) { c.LocalAddr = func() (netip.Addr, error) { return pub, nil } })
	h.waitCheck()
	m := h.change()
	if !m.Public || m.External != netip.AddrPortFrom(pub, 4500) || m.Err != nil {
		t.Errorf("mapping %+v, want public %v:4500", m, pub)
	}
	if err := h.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	checkCounts(t, f, fakeCounts{}) // never asked, nothing to delete
}

// TestMalformedReplies sends, before every answer to one kind of
// request, a datagram that is no answer to it. go-nat-pmp takes the first
// datagram from the gateway as the answer, so the request fails; what
// matters is that nothing in the junk is taken for a mapping, that the
// failure is neither a result code nor "no NAT-PMP" (something does
// answer), and that the next check recovers.
func TestMalformedReplies(t *testing.T) {
	t.Parallel()
	for _, op := range []byte{0, 1} {
		for _, name := range junkNames(op) {
			t.Run(fmt.Sprintf("op %d/%s", op, name), func(t *testing.T) {
				t.Parallel()
				f := newFakeNAT(t)
				f.set(func(f *fakeNAT) { f.junk, f.junkOp = name, op })
				h := start(t, f, nil)
				h.waitCheck()
				m := h.change()
				var re *ResultError
				var bad *badAnswerError
				if m.Valid() || m.Public || !errors.As(m.Err, &bad) || errors.As(m.Err, &re) || IsNoNATPMP(m.Err) {
					t.Fatalf("mapping %+v, want none, with a bad answer", m)
				}
				if want := []string{opNameExternal, opNameMap}[op]; bad.Op != want || bad.Gateway != f.addr.Addr() {
					t.Errorf("Err = %v, want a bad %s answer from %v", m.Err, want, f.addr.Addr())
				}
				want := fakeCounts{addr: 1, mapping: int(op)}
				checkCounts(t, f, want) // failed at once: no resend

				f.set(func(f *fakeNAT) { f.junk = "" })
				h.c.Refresh()
				h.waitCheck()
				if m := h.change(); m.External != netip.AddrPortFrom(testExternal, 4500) || m.Err != nil {
					t.Errorf("after the junk stopped %v, want a mapping", m)
				}
			})
		}
	}
}

// TestStrayAnswer checks that a well-formed answer from another address
// than the gateway's is not taken (spec §3.1).
func TestStrayAnswer(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.stray = true })
	h := start(t, f, nil)
	h.waitCheck()
	m := h.change()
	if want := netip.AddrPortFrom(testExternal, 4500); m.External != want || m.Err != nil || m.Epoch < 1000 {
		t.Errorf("mapping %+v, want %v", m, want)
	}
	checkCounts(t, f, fakeCounts{addr: 1, mapping: 1})
}

// TestRenewalBadAnswer checks that a garbled answer to a renewal, like
// none, keeps the mapping until it expires.
func TestRenewalBadAnswer(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	h := start(t, f, func(c *Config) {
		c.Lifetime = 4 * time.Second
		c.RetryMin, c.RetryMax = 300*time.Millisecond, 300*time.Millisecond
	})
	h.waitCheck()
	first := h.change()
	f.set(func(f *fakeNAT) { f.junk, f.junkOp = "version 1", 1 })
	h.waitCheck() // renewal at 2 s: a bad answer, mapping kept
	h.noChange()
	if cur, ok := h.c.Current(); !ok || cur.External != first.External {
		t.Errorf("Current() = %v, %v; want the mapping kept", cur, ok)
	}
	if !h.logged("keeping it") {
		t.Error("kept mapping not logged")
	}
	f.set(func(f *fakeNAT) { f.junk = "" })
	h.waitCheck() // retry after 300 ms: renewed
	h.noChange()
	if cur, ok := h.c.Current(); !ok || !cur.GoodUntil.After(first.GoodUntil) {
		t.Errorf("Current() = %v, %v; want the mapping renewed", cur, ok)
	}
	checkCounts(t, f, fakeCounts{addr: 3, mapping: 3})
}

func TestDeleteOnCancel(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	h := start(t, f, nil)
	h.waitCheck()
	h.change()
	if err := h.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	checkCounts(t, f, fakeCounts{addr: 1, mapping: 1, deletes: 1})
	log := f.log()
	if got, want := log[len(log)-1], (fakeMapReq{op: 1, internal: 4500}); got != want {
		t.Errorf("deletion %+v, want %+v", got, want)
	}
	if _, ok := f.mapping(4500); ok {
		t.Error("mapping not deleted")
	}
	if _, ok := <-h.c.Changes(); ok {
		t.Error("Changes not closed")
	}
	if _, ok := h.c.Current(); ok {
		t.Error("Current reports a mapping after Run returned")
	}
	if !h.logged("deleted") {
		t.Error("deletion not logged")
	}
}

// TestDeleteUnanswered checks that a deletion gives up after two sends.
func TestDeleteUnanswered(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	h := start(t, f, func(c *Config) { c.RequestTimeout = 10 * time.Second })
	h.waitCheck()
	h.change()
	f.set(func(f *fakeNAT) { f.silent = true })
	t0 := time.Now()
	if err := h.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if d := time.Since(t0); d < 700*time.Millisecond || d > 2*time.Second {
		t.Errorf("Run returned %v after ctx was done, want the deletion's 750 ms", d)
	}
	checkCounts(t, f, fakeCounts{addr: 1, mapping: 1, deletes: 2}) // at 0 and 250 ms
}

// TestCancelDuringCheck checks that a mapping request in flight when ctx
// ends is deleted too: the gateway may have made it. The deletion waits
// for the abandoned request's 200 ms timeout.
func TestCancelDuringCheck(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.silentMap = true })
	h := start(t, f, func(c *Config) { c.RequestTimeout = 200 * time.Millisecond })
	deadline := time.Now().Add(5 * time.Second)
	for f.counts().mapping == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no mapping request")
		}
		time.Sleep(time.Millisecond)
	}
	if err := h.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	checkCounts(t, f, fakeCounts{addr: 1, mapping: 1, deletes: 1})
	checkOneAtATime(t, f)
}

// TestStopWhileRequestOutstanding checks that Run returns soon after ctx
// is done even while a request with a long timeout is unanswered, and
// that the deletion is not sent while that request is still outstanding.
func TestStopWhileRequestOutstanding(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.silentMap = true })
	h := start(t, f, func(c *Config) { c.RequestTimeout = time.Minute })
	deadline := time.Now().Add(5 * time.Second)
	for f.counts().mapping == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no mapping request")
		}
		time.Sleep(time.Millisecond)
	}
	t0 := time.Now()
	if err := h.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if d := time.Since(t0); d > releaseWait+deleteTimeout+time.Second {
		t.Errorf("Run returned %v after ctx was done", d)
	}
	if c := f.counts(); c.deletes != 0 {
		t.Errorf("deletion sent while the mapping request was outstanding: %+v", c)
	}
	if !h.logged("gave up") {
		t.Error("abandoned deletion not logged")
	}
}

// TestAbandonedRequestHoldsGateway checks that a check cancelled by
// Refresh returns at once, and that the next request waits for the
// abandoned one to time out: the gateway never sees two sockets of the
// client at once (spec §3.1).
func TestAbandonedRequestHoldsGateway(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.silent = true })
	h := start(t, f, func(c *Config) { c.RequestTimeout = time.Second })
	deadline := time.Now().Add(5 * time.Second)
	for f.counts().addr == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no request")
		}
		time.Sleep(time.Millisecond)
	}
	t0 := time.Now()
	h.c.Refresh()
	h.waitCheck() // the cancelled one
	if d := time.Since(t0); d > 500*time.Millisecond {
		t.Errorf("cancelled check took %v to return", d)
	}
	h.noChange()
	h.waitCheck() // the next: waits ~1 s, then 1 s unanswered
	if m := h.change(); !m.Public || !errors.Is(m.Err, ErrNoAnswer) {
		t.Errorf("mapping %v, want public with no answer", m)
	}
	recv := checkOneAtATime(t, f)
	var ports []netip.AddrPort
	for _, r := range recv {
		if len(ports) == 0 || ports[len(ports)-1] != r.from {
			ports = append(ports, r.from)
		}
	}
	if len(ports) != 2 {
		t.Fatalf("requests from %v, want two sockets, one after the other", ports)
	}
	first := recv[0].at
	for _, r := range recv {
		if r.from == ports[1] {
			if d := r.at.Sub(first); d < 900*time.Millisecond {
				t.Errorf("second request %v after the first, want after its 1 s timeout", d)
			}
			break
		}
	}
}

// checkOneAtATime checks that every socket the fake heard from sent all
// its datagrams before the next one sent any, and returns what it heard.
func checkOneAtATime(t *testing.T, f *fakeNAT) []fakeRecv {
	t.Helper()
	recv := f.received()
	done := map[netip.AddrPort]bool{}
	for i, r := range recv {
		if done[r.from] {
			t.Errorf("%v sent again after %v had started: two requests at once", r.from, recv[i-1].from)
		}
		if i > 0 && recv[i-1].from != r.from {
			done[recv[i-1].from] = true
		}
	}
	return recv
}

// TestChangesNeverBlocks lets Changes go unread through several changes:
// Run carries on, and the reader then finds only the latest.
func TestChangesNeverBlocks(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	h := start(t, f, nil)
	h.waitCheck()
	to := h.announceTo()
	var last netip.Addr
	for i := range 5 {
		last = netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)})
		f.set(func(f *fakeNAT) { f.external = last })
		f.send(f.pmpAnnouncement(), to)
		h.waitCheck()
	}
	checkCounts(t, f, fakeCounts{addr: 6, mapping: 6})
	if m := h.change(); m.External.Addr() != last {
		t.Errorf("Changes held %v, want the latest, %v", m, last)
	}
	h.noChange()
}

func TestRefreshGatewayChange(t *testing.T) {
	t.Parallel()
	f1 := newFakeNAT(t)
	f2 := newFakeNAT(t)
	f2.set(func(f *fakeNAT) { f.external = netip.MustParseAddr("203.0.113.77") })
	var mu sync.Mutex
	gw := f1.addr.Addr()
	h := start(t, f1, func(c *Config) {
		c.Gateway = func() (netip.Addr, error) {
			mu.Lock()
			defer mu.Unlock()
			return gw, nil
		}
	})
	h.waitCheck()
	if m := h.change(); m.Gateway != f1.addr.Addr() {
		t.Fatalf("mapping %v via %v", m, m.Gateway)
	}
	mu.Lock()
	gw = f2.addr.Addr()
	mu.Unlock()
	h.c.Refresh()
	h.waitCheck()
	m := h.change()
	if m.Gateway != f2.addr.Addr() || m.External != netip.MustParseAddrPort("203.0.113.77:4500") {
		t.Errorf("after gateway change %v via %v", m, m.Gateway)
	}
	if err := h.stop(); err != nil {
		t.Error(err)
	}
	checkCounts(t, f1, fakeCounts{addr: 1, mapping: 1}) // forgotten, not deleted
	checkCounts(t, f2, fakeCounts{addr: 1, mapping: 1, deletes: 1})
}

func TestNoGateway(t *testing.T) {
	t.Parallel()
	h := start(t, nil, func(c *Config) {
		c.Gateway = func() (netip.Addr, error) { return netip.Addr{}, ErrNoGateway }
	})
	h.waitCheck()
	m := h.change()
	if m.Valid() || !errors.Is(m.Err, ErrNoGateway) {
		t.Errorf("mapping %v, want none with ErrNoGateway", m)
	}
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	h := start(t, newFakeNAT(t), nil)
	h.waitCheck()
	if err := h.c.Run(context.Background()); err == nil {
		t.Error("second Run returned nil")
	}
}

func TestNewPanicsWithoutPort(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	New(Config{})
}

// TestNewAddressBeforeStateLossDelay: a gateway that changes its address
// and restarts its epoch (miniupnpd on SIGUSR1) has its new address
// published at once; the mapping is recreated after the wait.
func TestNewAddressBeforeStateLossDelay(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	h := start(t, f, func(c *Config) { c.StateLossDelay = 3 * time.Second })
	h.waitCheck()
	first := h.change()
	f.set(func(f *fakeNAT) { f.external = netip.MustParseAddr("203.0.113.77") })
	f.setEpoch(0)
	t0 := time.Now()
	f.send(f.pmpAnnouncement(), h.announceTo())
	m := h.change()
	if d := time.Since(t0); d > time.Second {
		t.Errorf("the new address came %v after the announcement, want before the state-loss wait", d)
	}
	if want := netip.AddrPortFrom(netip.MustParseAddr("203.0.113.77"), first.External.Port()); m.External != want {
		t.Fatalf("early mapping %v, want %v", m, want)
	}
	h.waitCheck() // the mapping recreated after the wait
	if c := f.counts(); c.mapping < 2 {
		t.Fatalf("the mapping was not recreated after the state loss: %+v", c)
	}
}
