package portmap

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

var testNonce = [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

// TestPCPMapRequest checks the encoding of a MAP request against one
// written out by hand from RFC 6887 §7.1 and §11.1.
func TestPCPMapRequest(t *testing.T) {
	got := pcpMapRequest(netip.MustParseAddr("192.168.1.10"), testNonce, 4500, 4500, netip.Addr{}, 3600)
	want := unhex(t, "02 01 0000 00000e10 00000000000000000000ffff c0a8010a"+
		"0102030405060708090a0b0c 11 000000 1194 1194 00000000000000000000ffff 00000000")
	if !bytes.Equal(got, want) {
		t.Errorf("MAP request\n got %x\nwant %x", got, want)
	}
	// A renewal suggests the assigned address; a deletion has lifetime 0.
	got = pcpMapRequest(netip.MustParseAddr("10.0.0.2"), testNonce, 4500, 40000, netip.MustParseAddr("198.51.100.7"), 0)
	want = unhex(t, "02 01 0000 00000000 00000000000000000000ffff 0a000002"+
		"0102030405060708090a0b0c 11 000000 1194 9c40 00000000000000000000ffff c6336407")
	if !bytes.Equal(got, want) {
		t.Errorf("MAP deletion\n got %x\nwant %x", got, want)
	}
}

func TestParsePCPResponse(t *testing.T) {
	mapOK := "02 81 00 00 00000e10 0000002a 000000000000000000000000" +
		"0102030405060708090a0b0c 11 000000 1194 9c40 00000000000000000000ffff c6336407"
	for _, tc := range []struct {
		name string
		in   string
		want pcpResponse
		err  string // "" ok, "version" errPCPVersion, else any error
	}{
		{"MAP success", mapOK, pcpResponse{opcode: 1, lifetime: 3600, epoch: 42, nonce: testNonce, protocol: 17,
			internal: 4500, extPort: 40000, extAddr: netip.MustParseAddr("198.51.100.7")}, ""},
		{"MAP with an option", mapOK + "80000000", pcpResponse{opcode: 1, lifetime: 3600, epoch: 42, nonce: testNonce, protocol: 17,
			internal: 4500, extPort: 40000, extAddr: netip.MustParseAddr("198.51.100.7")}, ""},
		{"MAP NOT_AUTHORIZED", "02 81 00 02 0000001e 0000002a 000000000000000000000000" +
			"0102030405060708090a0b0c 11 000000 1194 0000 00000000000000000000ffff 00000000",
			pcpResponse{opcode: 1, result: PCPNotAuthorized, lifetime: 30, epoch: 42, nonce: testNonce, protocol: 17,
				internal: 4500, extAddr: netip.IPv4Unspecified()}, ""},
		{"ANNOUNCE", "02 80 00 00 00000000 00000007 000000000000000000000000", pcpResponse{epoch: 7}, ""},
		{"NAT-PMP unsupported version (miniupnpd)", "00 81 0001 0000002a", pcpResponse{}, "version"},
		{"NAT-PMP unsupported version (RFC figure)", "00 00 0001 0000002a", pcpResponse{}, "version"},
		{"PCP UNSUPP_VERSION from version 1", "01 81 00 01 00000000 0000002a 000000000000000000000000", pcpResponse{}, "version"},
		{"PCP UNSUPP_VERSION", "02 81 00 01 00000000 0000002a 000000000000000000000000", pcpResponse{}, "version"},
		{"NAT-PMP success", "00 80 0000 0000002a c6336407", pcpResponse{}, "error"},
		{"a request", "02 01 0000 00000e10 00000000000000000000ffff c0a8010a", pcpResponse{}, "error"},
		{"short MAP", mapOK[:len(mapOK)-8], pcpResponse{}, "error"},
		{"not a multiple of 4", mapOK + "00", pcpResponse{}, "error"},
		{"too short", "02 81 00", pcpResponse{}, "error"},
		{"header short", "02 81 00 00 00000e10", pcpResponse{}, "error"},
		{"version 3", "03 81 00 00 00000e10 0000002a 000000000000000000000000", pcpResponse{}, "error"},
		{"empty", "", pcpResponse{}, "error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePCPResponse(unhex(t, tc.in))
			switch tc.err {
			case "":
				if err != nil || got != tc.want {
					t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
				}
			case "version":
				if !errors.Is(err, errPCPVersion) {
					t.Errorf("got %+v, %v; want unsupported version", got, err)
				}
			default:
				if err == nil || errors.Is(err, errPCPVersion) {
					t.Errorf("got %+v, %v; want an error", got, err)
				}
			}
		})
	}
}

func TestPCPEpoch(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		last    uint32
		elapsed time.Duration
		next    uint32
		lost    bool
	}{
		{100, 0, 100, false},
		{100, 0, 99, false}, // back by up to 1 s: reordering
		{100, 0, 98, true},  // back by more
		{100, 80 * time.Second, 180, false},
		{100, 80 * time.Second, 175, false}, // server 75, client 80: 75+2 ≥ 80-5
		{100, 80 * time.Second, 172, true},  // server 72: 72+2 < 75
		{100, 80 * time.Second, 187, false}, // server 87: 80+2 ≥ 87-5.4375
		{100, 80 * time.Second, 188, true},  // server 88: 82 < 82.5
		{100, 1000 * time.Second, 101, true},
		{5000, 3 * time.Second, 0, true}, // miniupnpd restarted
		{100, -time.Hour, 100, false},    // a clock going backwards counts as no time
	} {
		var e pcpEpoch
		if e.observe(tc.last, t0) {
			t.Fatal("first observation reported a loss")
		}
		if got := e.observe(tc.next, t0.Add(tc.elapsed)); got != tc.lost {
			t.Errorf("last %d, %v later %d: lost = %v, want %v", tc.last, tc.elapsed, tc.next, got, tc.lost)
		}
	}
}

// pcpFirst is a mod for start: PCP, then NAT-PMP, as the daemon asks
// (UPnP IGD left out: no SSDP in unit tests).
func pcpFirst(c *Config) { c.Protocols = []Protocol{ProtoPCP, ProtoNATPMP} }

// fastPCP shortens RFC 6887's 3 s initial retransmission time to 100 ms.
func fastPCP(c *Client) { c.pcpIRT = 100 * time.Millisecond }

func TestPCPMapping(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.pcp, f.maxLifetime = true, 1200 })
	h := start(t, f, pcpFirst)
	h.waitCheck()
	m := h.change()
	want := netip.AddrPortFrom(testExternal, 4500)
	if m.External != want || m.Protocol != ProtoPCP || m.Public || m.Err != nil || m.Gateway != f.addr.Addr() {
		t.Fatalf("mapping %+v, want %v by PCP", m, want)
	}
	if m.Lifetime != 1200*time.Second || m.Epoch < 1000 || m.Epoch > 1010 {
		t.Errorf("Lifetime %v, Epoch %d; want 20m0s, about 1000", m.Lifetime, m.Epoch)
	}
	// RFC 6887 §11.2.1: renew between 1/2 and 5/8 of the lifetime.
	if d := m.GoodUntil.Sub(m.RenewAt); d < 450*time.Second || d > 600*time.Second {
		t.Errorf("RenewAt %v before GoodUntil, want 450 to 600 s", d)
	}
	reqs := f.pcpRequests()
	if len(reqs) != 1 || reqs[0].internal != 4500 || reqs[0].suggested != 4500 || reqs[0].lifetime != 3600 || reqs[0].nonce == [12]byte{} {
		t.Errorf("PCP requests %+v", reqs)
	}
	// The client's address in the request is the socket's (127.x here),
	// or the fake would have answered ADDRESS_MISMATCH; and no NAT-PMP
	// was asked.
	checkCounts(t, f, fakeCounts{})
	if !h.logged("answers PCP") || !h.logged("(PCP)") {
		t.Error("the protocol is not logged")
	}
}

func TestPCPRenewal(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.pcp = true; f.taken[4500] = true })
	h := start(t, f, func(c *Config) { pcpFirst(c); c.Lifetime = 2 * time.Second })
	h.waitCheck()
	m := h.change()
	if m.External.Port() != 40000 || m.Protocol != ProtoPCP {
		t.Fatalf("mapping %v, want port 40000 by PCP", m)
	}
	t0 := time.Now()
	h.waitCheck()
	if d := time.Since(t0); d < 900*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("renewed after %v, want 1 to 1.25 s", d)
	}
	h.noChange()
	reqs := f.pcpRequests()
	if len(reqs) != 2 || reqs[1].nonce != reqs[0].nonce || reqs[1].suggested != 40000 {
		t.Errorf("requests %+v, want a renewal with the same nonce suggesting port 40000", reqs)
	}
	checkCounts(t, f, fakeCounts{})
}

// TestPCPReboot: the gateway loses its state and announces it (what
// miniupnpd does on a restart): the mapping is back at once, with the
// same nonce and port, and the Change says Reboot.
func TestPCPReboot(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.pcp = true })
	f.setEpoch(10000)
	h := start(t, f, pcpFirst)
	h.waitCheck()
	first := h.change()
	f.reboot()
	t0 := time.Now()
	f.send(f.pcpAnnouncement(), h.announceTo())
	h.waitCheck()
	m := h.change()
	if d := time.Since(t0); d > time.Second {
		t.Errorf("healed %v after the ANNOUNCE", d)
	}
	if !m.Reboot || m.External != first.External || m.Protocol != ProtoPCP || m.Epoch > 5 {
		t.Errorf("after the reboot %+v, want %v again, Reboot, the new epoch", m, first.External)
	}
	if _, ok := f.mapping(4500); !ok {
		t.Error("mapping not recreated")
	}
	reqs := f.pcpRequests()
	if len(reqs) != 2 || reqs[1].nonce != reqs[0].nonce {
		t.Errorf("requests %+v", reqs)
	}
	if !h.logged("lost its mappings") {
		t.Error("reboot not logged")
	}
}

// TestPCPRebootAtRenewal: the epoch alone (no ANNOUNCE heard) shows the
// reboot at the next renewal.
func TestPCPRebootAtRenewal(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.pcp = true })
	f.setEpoch(10000)
	h := start(t, f, func(c *Config) { pcpFirst(c); c.Lifetime = 2 * time.Second })
	h.waitCheck()
	h.change()
	f.reboot()
	h.waitCheck()
	if m := h.change(); !m.Reboot {
		t.Errorf("after the reboot %+v, want Reboot", m)
	}
}

// TestPCPFallbackToNATPMP: a NAT-PMP-only gateway answers the PCP request
// with Unsupported Version, and the client goes on with NAT-PMP at once.
func TestPCPFallbackToNATPMP(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	t0 := time.Now()
	h := startC(t, f, pcpFirst, nil) // RFC 6887's 3 s IRT: an answer must not wait for it
	h.waitCheck()
	m := h.change()
	if d := time.Since(t0); d > time.Second {
		t.Errorf("took %v", d)
	}
	if m.Protocol != ProtoNATPMP || m.External != netip.AddrPortFrom(testExternal, 4500) {
		t.Fatalf("mapping %+v, want NAT-PMP", m)
	}
	checkCounts(t, f, fakeCounts{addr: 1, mapping: 1, others: 1})
	// NAT-PMP holds the mapping now: it is asked first, and alone when
	// it answers.
	h.c.Refresh()
	h.waitCheck()
	checkCounts(t, f, fakeCounts{addr: 2, mapping: 2, others: 1})
	h.stop()
	checkCounts(t, f, fakeCounts{addr: 2, mapping: 2, others: 1, deletes: 1})
}

// TestPCPSilentFallback: a gateway that drops PCP is given up after
// the probe's bound, and NAT-PMP is asked.
func TestPCPSilentFallback(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.pcp, f.pcpSilent = true, 1000 })
	t0 := time.Now()
	h := startC(t, f, func(c *Config) { pcpFirst(c); c.RequestTimeout = time.Second }, fastPCP)
	h.waitCheck()
	m := h.change()
	if d := time.Since(t0); d < time.Second || d > 3*time.Second {
		t.Errorf("NAT-PMP mapping after %v, want after PCP's 1 s", d)
	}
	if m.Protocol != ProtoNATPMP {
		t.Fatalf("mapping %+v, want NAT-PMP", m)
	}
	// RFC 6887 §8.1.1: sends at 0, ~100 ms, ~300 ms, ~700 ms (doubling,
	// ±10 %), within the 1 s bound, all with one nonce.
	reqs := f.pcpRequests()
	if len(reqs) != 4 {
		t.Errorf("%d PCP sends in 1 s, want 4", len(reqs))
	}
	for _, r := range reqs {
		if r.nonce != reqs[0].nonce {
			t.Error("a retransmission with another nonce")
		}
	}
}

// TestPCPRetransmissionSchedule measures the gaps between sends.
func TestPCPRetransmissionSchedule(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.pcp, f.pcpSilent = true, 4 })
	h := startC(t, f, func(c *Config) { c.Protocols = []Protocol{ProtoPCP}; c.RequestTimeout = 10 * time.Second },
		func(c *Client) { c.pcpIRT = 200 * time.Millisecond })
	h.waitCheck()
	if m := h.change(); m.Protocol != ProtoPCP {
		t.Fatalf("mapping %+v, want PCP after 4 unanswered sends", m)
	}
	var at []time.Time
	for _, r := range f.received() {
		at = append(at, r.at)
	}
	if len(at) != 5 {
		t.Fatalf("%d sends, want 5", len(at))
	}
	// RT = (1+RAND)·IRT, then RT = (1+RAND)·2·RTprev, RAND in ±0.1 (and
	// some slack for late timers on a loaded machine).
	if gap := at[1].Sub(at[0]); gap < 175*time.Millisecond || gap > 280*time.Millisecond {
		t.Errorf("first gap %v, want 200 ms ± 10 %%", gap)
	}
	for i := 2; i < len(at); i++ {
		prev, gap := at[i-1].Sub(at[i-2]), at[i].Sub(at[i-1])
		if r := float64(gap) / float64(prev); r < 1.5 || r > 2.5 {
			t.Errorf("gap %d is %v after %v: ratio %.2f, want 2 ± 10 %%", i, gap, prev, r)
		}
	}
}

func TestPCPResultCodes(t *testing.T) {
	t.Parallel()
	for code := PCPNotAuthorized; code <= PCPExcessiveRemotePeers; code++ {
		t.Run(code.String(), func(t *testing.T) {
			t.Parallel()
			f := newFakeNAT(t)
			f.set(func(f *fakeNAT) { f.pcp, f.pcpResult = true, uint8(code) })
			h := start(t, f, func(c *Config) { c.Protocols = []Protocol{ProtoPCP} })
			h.waitCheck()
			m := h.change()
			var pe *PCPResultError
			if !errors.As(m.Err, &pe) || pe.Code != code || pe.Op != opNameMap || pe.Lifetime != 30*time.Second {
				t.Fatalf("Err = %v, want a *PCPResultError %v", m.Err, code)
			}
			if m.Valid() || m.Public || m.Protocol != ProtoNone {
				t.Errorf("mapping %+v, want none", m)
			}
			if got := IsDoubleNAT(m.Err); got != (code == PCPNetworkFailure) {
				t.Errorf("IsDoubleNAT = %v", got)
			}
			h.stop()
			if n := len(f.pcpRequests()); n != 1 {
				t.Errorf("%d PCP requests, want 1 (a refused mapping is not deleted)", n)
			}
		})
	}
}

// TestPCPRefusedThenNATPMP: with a PCP refusal, NAT-PMP is still asked;
// and if it maps, NAT-PMP holds the mapping.
func TestPCPRefusedThenNATPMP(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.pcp, f.pcpResult = true, uint8(PCPNoResources) })
	h := start(t, f, pcpFirst)
	h.waitCheck()
	if m := h.change(); m.Protocol != ProtoNATPMP || !m.Valid() {
		t.Fatalf("mapping %+v, want NAT-PMP", m)
	}
	// Both refuse: the first answer is reported, NAT-PMP's (it held the
	// mapping, so it is asked first).
	f.set(func(f *fakeNAT) { f.mapResult = uint16(ResultNotAuthorized) })
	h.c.Refresh()
	h.waitCheck()
	m := h.change()
	var re *ResultError
	if m.Valid() || !errors.As(m.Err, &re) || re.Code != ResultNotAuthorized {
		t.Errorf("mapping %+v, want none with NAT-PMP's result 2", m)
	}
	if n := len(f.pcpRequests()); n != 2 {
		t.Errorf("%d PCP requests, want 2", n)
	}
	// Stopping deletes with NAT-PMP, which may still hold the mapping;
	// PCP refused, so it holds none.
	h.stop()
	if n := len(f.pcpRequests()); n != 2 || f.counts().deletes != 1 {
		t.Errorf("%d PCP requests and %+v, want the deletion by NAT-PMP", n, f.counts())
	}
}

// TestPCPJunk sends, before every answer, a datagram that is no answer
// to the request: unlike go-nat-pmp, the PCP client drops it and takes
// the real answer.
func TestPCPJunk(t *testing.T) {
	t.Parallel()
	for _, name := range pcpJunkNames() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFakeNAT(t)
			f.set(func(f *fakeNAT) { f.pcp, f.pcpJunk = true, name })
			h := start(t, f, func(c *Config) { c.Protocols = []Protocol{ProtoPCP} })
			h.waitCheck()
			if m := h.change(); m.External != netip.AddrPortFrom(testExternal, 4500) || m.Err != nil {
				t.Errorf("mapping %+v, want the real answer's", m)
			}
			if n := len(f.pcpRequests()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

// TestPCPJunkOnly: only junk comes back: a bad answer, not a public
// network.
func TestPCPJunkOnly(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.pcp, f.pcpJunk, f.pcpSilent = true, "other nonce", 1000 })
	h := startC(t, f, func(c *Config) { c.Protocols = []Protocol{ProtoPCP}; c.RequestTimeout = 300 * time.Millisecond }, fastPCP)
	h.waitCheck()
	m := h.change()
	var bad *badAnswerError
	if m.Valid() || m.Public || !errors.As(m.Err, &bad) || bad.Proto != ProtoPCP {
		t.Errorf("mapping %+v, want none with a bad PCP answer", m)
	}
}

func TestPCPDeleteOnStop(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.pcp = true })
	h := start(t, f, pcpFirst)
	h.waitCheck()
	h.change()
	if err := h.stop(); err != nil {
		t.Error(err)
	}
	reqs := f.pcpRequests()
	if len(reqs) != 2 || reqs[1].lifetime != 0 || reqs[1].nonce != reqs[0].nonce || reqs[1].internal != 4500 {
		t.Errorf("requests %+v, want a deletion (lifetime 0, same nonce)", reqs)
	}
	if _, ok := f.mapping(4500); ok {
		t.Error("mapping not deleted")
	}
	if !h.logged("deleted the mapping of port 4500") {
		t.Error("deletion not logged")
	}
	checkCounts(t, f, fakeCounts{})
}

// TestPCPPortUnreachable: nothing on port 5351: PCP and NAT-PMP both
// fail at once on the ICMP port unreachable, and the host is taken to be
// on a public network.
func TestPCPPortUnreachable(t *testing.T) {
	t.Parallel()
	gw := nextLoopback()
	t0 := time.Now()
	h := start(t, nil, func(c *Config) {
		pcpFirst(c)
		c.Gateway = func() (netip.Addr, error) { return gw, nil }
	})
	h.waitCheck()
	m := h.change()
	if d := time.Since(t0); d > time.Second {
		t.Errorf("took %v", d)
	}
	var ne *NoNATPMPError
	if !m.Public || !errors.As(m.Err, &ne) || !errors.Is(m.Err, syscall.ECONNREFUSED) || fmt.Sprint(ne.Protocols) != "[PCP NAT-PMP]" {
		t.Fatalf("mapping %+v, want public, no PCP or NAT-PMP", m)
	}
	if want := "no PCP or NAT-PMP at " + gw.String() + ": port unreachable"; !bytes.Contains([]byte(m.Err.Error()), []byte(want)) {
		t.Errorf("Err = %q, want it to say %q", m.Err, want)
	}
}

// TestPCPCancel: Run returns soon after ctx ends while a PCP request
// waits for an answer.
func TestPCPCancel(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.pcp, f.pcpSilent = true, 1000 })
	h := start(t, f, func(c *Config) { c.Protocols = []Protocol{ProtoPCP}; c.RequestTimeout = time.Minute })
	deadline := time.Now().Add(5 * time.Second)
	for len(f.pcpRequests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	t0 := time.Now()
	h.stop()
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("Run returned %v after ctx ended", d)
	}
}

// TestPCPNewAddressBeforeStateLossDelay: a gateway that changes its
// address announces it with NAT-PMP and PCP (miniupnpd on SIGUSR1): the
// new address, confirmed by a NAT-PMP external address request, is
// published at once with the port held; the PCP mapping is renewed after
// the wait.
func TestPCPNewAddressBeforeStateLossDelay(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.set(func(f *fakeNAT) { f.pcp = true })
	h := start(t, f, func(c *Config) { pcpFirst(c); c.StateLossDelay = 3 * time.Second })
	h.waitCheck()
	first := h.change()
	if first.Protocol != ProtoPCP {
		t.Fatalf("mapping %+v, want PCP", first)
	}
	next := netip.MustParseAddr("203.0.113.77")
	f.set(func(f *fakeNAT) { f.external = next })
	f.setEpoch(0)
	t0 := time.Now()
	f.send(f.pmpAnnouncement(), h.announceTo())
	m := h.change()
	if d := time.Since(t0); d > time.Second {
		t.Errorf("the new address came %v after the announcement, want before the state-loss wait", d)
	}
	if want := netip.AddrPortFrom(next, first.External.Port()); m.External != want || m.Protocol != ProtoPCP {
		t.Fatalf("early mapping %+v, want %v by PCP", m, want)
	}
	h.waitCheck() // the MAP after the wait
	if n := len(f.pcpRequests()); n != 2 {
		t.Errorf("%d PCP requests, want the renewal after the wait", n)
	}
	if c := f.counts(); c.addr != 1 || c.mapping != 0 {
		t.Errorf("NAT-PMP requests %+v, want one external address request", c)
	}
}
