package portmap

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	natpmp "github.com/jackpal/go-nat-pmp"
)

// TestPMPGateway checks the requester on go-nat-pmp against the fake:
// what it asks, and what it makes of the answers.
func TestPMPGateway(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	f.setEpoch(777)
	f.set(func(f *fakeNAT) { f.taken[4500] = true })
	g := newPMPGateway(f.addr.Addr(), 2*time.Second)
	ctx := context.Background()

	ext, epoch, err := g.ExternalAddress(ctx)
	if err != nil || ext != testExternal || epoch < 777 || epoch > 787 {
		t.Errorf("ExternalAddress = %v, %d, %v; want %v, about 777", ext, epoch, err, testExternal)
	}
	port, granted, epoch, err := g.Map(ctx, 4500, 4500, 3600*time.Second)
	if err != nil || port != 40000 || granted != 3600*time.Second || epoch < 777 || epoch > 787 {
		t.Errorf("Map = %d, %v, %d, %v; want 40000, 1h0m0s, about 777", port, granted, epoch, err)
	}
	if fm, ok := f.mapping(4500); !ok || fm.external != 40000 || fm.lifetime != 3600 {
		t.Errorf("fake holds %+v, %v", fm, ok)
	}
	if err := g.Delete(ctx, 4500); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if _, ok := f.mapping(4500); ok {
		t.Error("deletion left the mapping")
	}
	want := []fakeMapReq{
		{op: 1, internal: 4500, suggested: 4500, lifetime: 3600},
		{op: 1, internal: 4500}, // RFC 6886 §3.4
	}
	if got := f.log(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("mapping requests %+v, want %+v", got, want)
	}
	checkCounts(t, f, fakeCounts{addr: 1, mapping: 1, deletes: 1})

	// A cancelled context: nothing sent.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := g.ExternalAddress(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("ExternalAddress with a cancelled ctx: %v", err)
	}
	checkCounts(t, f, fakeCounts{addr: 1, mapping: 1, deletes: 1})
}

// TestLibraryErrorText pins the texts of go-nat-pmp's errors that
// libError reads: a version of the library that words them differently
// must fail here, not silently turn result codes into bad answers and
// silence into a failure. It also checks what libError makes of every
// kind of failure the library reports, with the library talking to the
// fake.
func TestLibraryErrorText(t *testing.T) {
	t.Parallel()
	f := newFakeNAT(t)
	lib := natpmp.NewClientWithTimeout(net.IP(f.addr.Addr().AsSlice()), 2*time.Second)
	g := newPMPGateway(f.addr.Addr(), 2*time.Second)
	ctx := context.Background()

	for _, tc := range []struct {
		code ResultCode
		text string
	}{
		{1, "Non-zero result code 1 (Unsupported Version)"},
		{2, "Non-zero result code 2 (Not Authorized/Refused)"},
		{3, "Non-zero result code 3 (Network Failure (box has no DHCP lease or external IP))"},
		{4, "Non-zero result code 4 (Out of resources)"},
		{5, "Non-zero result code 5 (Unsupported opcode)"},
		{6, "Non-zero result code 6"},
		{65535, "Non-zero result code 65535"},
	} {
		f.set(func(f *fakeNAT) { f.mapResult = uint16(tc.code) })
		if _, err := lib.AddPortMapping("udp", 4500, 4500, 3600); err == nil || err.Error() != tc.text {
			t.Errorf("go-nat-pmp reports result %d as %q, want %q", tc.code, err, tc.text)
		}
		var re *ResultError
		if _, _, _, err := g.Map(ctx, 4500, 4500, time.Hour); !errors.As(err, &re) || re.Code != tc.code || re.Op != opNameMap {
			t.Errorf("Map with result %d: %v", tc.code, err)
		}
		f.set(func(f *fakeNAT) { f.mapResult, f.addrResult = 0, uint16(tc.code) })
		if _, _, err := g.ExternalAddress(ctx); !errors.As(err, &re) || re.Code != tc.code || re.Op != opNameExternal {
			t.Errorf("ExternalAddress with result %d: %v", tc.code, err)
		}
		if err := g.Delete(ctx, 4500); err != nil { // op 0's result only
			t.Errorf("Delete: %v", err)
		}
		f.set(func(f *fakeNAT) { f.mapResult, f.addrResult = uint16(tc.code), 0 })
		if err := g.Delete(ctx, 4500); !errors.As(err, &re) || re.Code != tc.code || re.Op != opNameDelete {
			t.Errorf("Delete with result %d: %v", tc.code, err)
		}
		f.set(func(f *fakeNAT) { f.mapResult = 0 })
	}

	// Silence.
	f.set(func(f *fakeNAT) { f.silent = true })
	quick := natpmp.NewClientWithTimeout(net.IP(f.addr.Addr().AsSlice()), 100*time.Millisecond)
	if _, err := quick.GetExternalAddress(); err == nil || err.Error() != libTimeoutText {
		t.Errorf("go-nat-pmp reports silence as %q, want %q", err, libTimeoutText)
	}
	var ne *NoNATPMPError
	gq := newPMPGateway(f.addr.Addr(), 100*time.Millisecond)
	if _, _, err := gq.ExternalAddress(ctx); !errors.As(err, &ne) || ne.Gateway != f.addr.Addr() || !errors.Is(err, ErrNoAnswer) {
		t.Errorf("ExternalAddress from a silent gateway: %v", err)
	}
	f.set(func(f *fakeNAT) { f.silent = false })

	// ICMP port unreachable: nothing on port 5351.
	gw := nextLoopback()
	if _, err := natpmp.NewClientWithTimeout(net.IP(gw.AsSlice()), 2*time.Second).GetExternalAddress(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("go-nat-pmp reports port unreachable as %v, want ECONNREFUSED", err)
	}
	if _, _, err := newPMPGateway(gw, 2*time.Second).ExternalAddress(ctx); !IsNoNATPMP(err) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("ExternalAddress from a closed port: %v", err)
	}
}

// TestLibError checks how tightly libError reads the library's texts.
func TestLibError(t *testing.T) {
	g := &pmpGateway{gw: netip.MustParseAddr("192.168.1.1")}
	for _, tc := range []struct {
		text string
		code ResultCode // 0: not a result code
	}{
		{"Non-zero result code 3 (Network Failure (box has no DHCP lease or external IP))", 3},
		{"Non-zero result code 2 (anything)", 2},
		{"Non-zero result code 7", 7},
		{"Non-zero result code 65535", 65535},
		{"Non-zero result code 65536", 0},
		{"Non-zero result code 0", 0},
		{"Non-zero result code -1", 0},
		{"Non-zero result code 3 trailing", 0},
		{"Non-zero result code 3 (x) trailing", 0},
		{"Non-zero result code 3\n", 0},
		{"xNon-zero result code 3", 0},
		{"Non-zero result code", 0},
		{"unexpected result size 0, expected 12", 0},
	} {
		err := g.libError(opNameMap, errors.New(tc.text))
		var re *ResultError
		var bad *badAnswerError
		if tc.code != 0 {
			if !errors.As(err, &re) || re.Code != tc.code || re.Op != opNameMap {
				t.Errorf("%q: %v, want result %d", tc.text, err, tc.code)
			}
			continue
		}
		if !errors.As(err, &bad) || errors.As(err, &re) {
			t.Errorf("%q: %v, want a bad answer", tc.text, err)
		}
	}
	if err := g.libError(opNameMap, errors.New(libTimeoutText)); !errors.Is(err, ErrNoAnswer) || !IsNoNATPMP(err) {
		t.Errorf("time-out: %v", err)
	}
	if err := g.libError(opNameMap, errors.New(libTimeoutText+".")); IsNoNATPMP(err) {
		t.Errorf("near time-out: %v", err)
	}
	refused := &net.OpError{Op: "read", Net: "udp", Err: syscall.ECONNREFUSED}
	if err := g.libError(opNameMap, refused); !IsNoNATPMP(err) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("port unreachable: %v", err)
	}
	unreach := &net.OpError{Op: "write", Net: "udp", Err: syscall.EHOSTUNREACH}
	if err := g.libError(opNameMap, unreach); IsNoNATPMP(err) || !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Errorf("host unreachable: %v", err)
	} else {
		var bad *badAnswerError
		if errors.As(err, &bad) {
			t.Errorf("host unreachable taken for a bad answer: %v", err)
		}
	}
}
