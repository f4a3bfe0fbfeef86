package main

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openbtmm/btmm/client/daemon"
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
