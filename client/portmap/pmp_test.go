package portmap

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseAnnouncement(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
		want announcement
	}{
		{"NAT-PMP", "0080 0000 00000005 cb007109", true,
			announcement{epoch: 5, external: netip.MustParseAddr("203.0.113.9")}},
		{"NAT-PMP, extra bytes", "0080 0000 00000005 cb007109 ffff", true,
			announcement{epoch: 5, external: netip.MustParseAddr("203.0.113.9")}},
		{"NAT-PMP, error", "0080 0003 00000005 00000000", false, announcement{}},
		{"NAT-PMP, short", "0080 0000 00000005 cb0071", false, announcement{}},
		{"NAT-PMP, mapping", "0081 0000 00000005 1194 1194 00000e10", false, announcement{}},
		{"PCP ANNOUNCE (miniupnpd)", "02 80 00 00 00000000 0000002a 000000000000000000000000", true,
			announcement{pcp: true, epoch: 42}},
		{"PCP ANNOUNCE with an option", "02 80 00 00 00000000 0000002a 000000000000000000000000 00000000", true,
			announcement{pcp: true, epoch: 42}},
		{"PCP ANNOUNCE, 23 bytes", "02 80 00 00 00000000 0000002a 0000000000000000000000", false, announcement{}},
		{"PCP ANNOUNCE, 26 bytes", "02 80 00 00 00000000 0000002a 000000000000000000000000 0000", false, announcement{}},
		{"PCP ANNOUNCE, error", "02 80 00 07 00000000 0000002a 000000000000000000000000", false, announcement{}},
		{"PCP ANNOUNCE request", "02 00 00 00 00000000 0000002a 000000000000000000000000", false, announcement{}},
		{"PCP MAP response", "02 81 00 00 00000000 0000002a 000000000000000000000000", false, announcement{}},
		{"version 1", "01 80 00 00 00000000 0000002a 000000000000000000000000", false, announcement{}},
		{"empty", "", false, announcement{}},
	} {
		got, ok := parseAnnouncement(unhex(t, tc.in))
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("%s: parse = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := parseAnnouncement(make([]byte, 1104)); ok {
		t.Error("accepted a datagram longer than PCP allows")
	}
}

func TestResultCodeString(t *testing.T) {
	want := []string{"success", "unsupported version", "not authorized/refused", "network failure", "out of resources", "unsupported opcode", "result 6"}
	for i, w := range want {
		if got := ResultCode(i).String(); got != w {
			t.Errorf("ResultCode(%d) = %q, want %q", i, got, w)
		}
	}
	err := error(&ResultError{Op: "map UDP", Code: ResultNetworkFailure})
	if got, want := err.Error(), "portmap: NAT-PMP map UDP: result 3 (network failure)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !IsDoubleNAT(fmt.Errorf("wrapped: %w", err)) || IsDoubleNAT(&ResultError{Code: 2}) || IsDoubleNAT(errors.New("x")) {
		t.Error("IsDoubleNAT wrong")
	}
	ne := &NoNATPMPError{Gateway: netip.MustParseAddr("192.168.1.1"), Err: ErrNoAnswer}
	if got, want := ne.Error(), "portmap: no NAT-PMP at 192.168.1.1: no answer"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	ne.Err = syscall.ECONNREFUSED
	if got, want := ne.Error(), "portmap: no NAT-PMP at 192.168.1.1: port unreachable"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !IsNoNATPMP(fmt.Errorf("x: %w", ne)) || IsNoNATPMP(err) {
		t.Error("IsNoNATPMP wrong")
	}
}

func TestIsPrivate(t *testing.T) {
	for _, tc := range []struct {
		addr             string
		private, sharedP bool
	}{
		{"10.0.0.1", true, true},
		{"10.255.255.255", true, true},
		{"172.16.0.1", true, true},
		{"172.31.255.255", true, true},
		{"172.32.0.1", false, false},
		{"172.15.255.255", false, false},
		{"192.168.1.10", true, true},
		{"192.169.0.1", false, false},
		{"100.64.0.1", false, true},
		{"100.127.255.255", false, true},
		{"100.128.0.0", false, false},
		{"100.63.255.255", false, false},
		{"198.51.100.7", false, false},
		{"127.0.0.1", false, false},
		{"169.254.1.1", false, false},
		{"::ffff:192.168.1.1", true, true},
		{"::ffff:100.64.0.1", false, true},
		{"fd00::1", false, false},
		{"2001:db8::1", false, false},
	} {
		a := netip.MustParseAddr(tc.addr)
		if got := IsPrivate(a); got != tc.private {
			t.Errorf("IsPrivate(%v) = %v", a, got)
		}
		if got := IsSharedOrPrivate(a); got != tc.sharedP {
			t.Errorf("IsSharedOrPrivate(%v) = %v", a, got)
		}
	}
	if IsPrivate(netip.Addr{}) || IsSharedOrPrivate(netip.Addr{}) {
		t.Error("the zero Addr is private")
	}
}
