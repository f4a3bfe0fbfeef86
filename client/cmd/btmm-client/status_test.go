package main

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openbtmm/btmm/client/daemon"
	"github.com/openbtmm/btmm/client/hostcert"
)

func TestPrintStatusTunnels(t *testing.T) {
	st := daemon.Status{
		Host: "desktop.alice.members.example.com.",
		Tunnels: []daemon.TunnelStatus{{
			ULA:      netip.MustParseAddr("fd00:1::b"),
			Endpoint: netip.MustParseAddrPort("23.2.2.2:4500"),
			HasSA:    true, SAAge: 42 * time.Second, Suite: "AES-256-GCM",
			LastHandshake: time.Now().Add(-42 * time.Second),
			RxBytes:       624, RxPackets: 6, TxBytes: 520, TxPackets: 5,
			Drops: daemon.TunnelDrops{Replay: 1, BadICV: 2, BadSource: 4},
		}},
		TunnelDrops: daemon.TunnelCounters{UnknownSPI: 5, BadHandshake: 6},
	}
	var b strings.Builder
	printStatus(&b, st)
	out := b.String()
	for _, want := range []string{"1 tunnels", "fd00:1::b", "23.2.2.2:4500", "42s", "624 B (6 pkts)", "520 B (5 pkts)", "AES-256-GCM",
		"7 (1/2/0/4)", "5 unknown SPI", "6 refused handshakes"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	st.Tunnels, st.TunnelError = nil, "tun: operation not permitted"
	b.Reset()
	printStatus(&b, st)
	if !strings.Contains(b.String(), "no tunnel: tun: operation not permitted") {
		t.Errorf("status without a tunnel:\n%s", b.String())
	}
}

// TestPrintStatusMapping: status names the protocol that holds the
// mapping.
func TestPrintStatusMapping(t *testing.T) {
	for _, tc := range []struct {
		m    daemon.MappingStatus
		want string
	}{
		{daemon.MappingStatus{External: "23.1.1.2:4500", Protocol: "pcp", Gateway: "192.168.1.1", Epoch: 12},
			"23.1.1.2:4500 (PCP via 192.168.1.1, epoch 12)"},
		{daemon.MappingStatus{External: "23.1.1.2:4500", Protocol: "natpmp", Gateway: "192.168.1.1", Epoch: 12},
			"23.1.1.2:4500 (NAT-PMP via 192.168.1.1, epoch 12)"},
		{daemon.MappingStatus{External: "23.1.1.2:4500", Protocol: "upnp", Gateway: "192.168.1.1", Lifetime: time.Hour},
			"23.1.1.2:4500 (UPnP IGD via 192.168.1.1, lease 1h0m0s)"},
		{daemon.MappingStatus{External: "23.1.1.2:4500", Protocol: "upnp", Gateway: "192.168.1.1"},
			"23.1.1.2:4500 (UPnP IGD via 192.168.1.1, permanent mapping)"},
		{daemon.MappingStatus{External: "23.3.3.10:4500", Public: true}, "23.3.3.10:4500 (no NAT)"},
	} {
		var b strings.Builder
		printStatus(&b, daemon.Status{Mapping: tc.m})
		if !regexp.MustCompile(`(?m)^reachable at +` + regexp.QuoteMeta(tc.want) + `$`).MatchString(b.String()) {
			t.Errorf("status of %+v:\n%s\nwant %q", tc.m, b.String(), tc.want)
		}
	}
}

// TestPrintStatusTrust: status says how peers are trusted, and lists the
// hosts refused with the reason.
func TestPrintStatusTrust(t *testing.T) {
	var b strings.Builder
	printStatus(&b, daemon.Status{Trust: daemon.TrustStatus{Mode: "server"}})
	if !strings.Contains(b.String(), "trust: the server (no user key pinned: btmm-client enroll)") {
		t.Errorf("not enrolled:\n%s", b.String())
	}
	b.Reset()
	printStatus(&b, daemon.Status{Trust: daemon.TrustStatus{Mode: "user-key", Status: hostcert.Status{
		Pins: []string{"b7f165af10e11924"}, Signers: []string{"b7f165af10e11924"}, RevocationSerial: 9, Revoked: 2, RefusedTotal: 4,
		Refused: []hostcert.Refusal{{Host: "evil.alice.members.example.com.", Reason: "bad signature (for evil.alice.members.example.com. under key ID b7f165af10e11924)", Since: time.Now()}},
	}}})
	for _, want := range []string{"user key [b7f165af10e11924]", "signs here: yes", "2 keys revoked (list serial 9)", "1 hosts refused now (4 refusals in all)",
		"evil.alice.members.example.com.", "bad signature"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}
