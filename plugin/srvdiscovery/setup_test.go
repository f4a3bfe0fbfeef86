package srvdiscovery

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/openbtmm/btmm/plugin/pkg/setuptest"
)

func TestParse(t *testing.T) {
	const ns1, ns2 = "ns1.members.example.com.", "ns2.members.example.com."
	var (
		update    = Service{"update", false}
		updateTLS = Service{"update", true}
		llq       = Service{"llq", false}
		llqTLS    = Service{"llq", true}
	)
	setuptest.Run(t, parse, []setuptest.Case[*SrvDiscovery]{
		{Input: "srv-discovery {\n update ns1.members.example.com. 853 tls\n update ns1.members.example.com. 53\n llq ns1.members.example.com. 853 tls\n llq ns1.members.example.com. 5352\n}",
			Check: targets(map[Service][]Target{updateTLS: {{ns1, 853}}, update: {{ns1, 53}}, llqTLS: {{ns1, 853}}, llq: {{ns1, 5352}}})},
		// Several targets for one service, in the order given; names
		// made fully qualified and lowercase.
		{Input: "srv-discovery {\n update NS1.Members.Example.com 853 tls\n update ns2.members.example.com. 853 tls\n update ns1.members.example.com. 8853 tls\n}",
			Check: targets(map[Service][]Target{updateTLS: {{ns1, 853}, {ns2, 853}, {ns1, 8853}}})},
		{Input: "srv-discovery {\n llq llq.example.net 5352\n}",
			Check: targets(map[Service][]Target{llq: {{"llq.example.net.", 5352}}})},
		{Input: "srv-discovery {\n llq x 65535\n}",
			Check: targets(map[Service][]Target{llq: {{"x.", 65535}}})},
		{Input: "srv-discovery {\n llq 1-2.example.net. 1\n}",
			Check: targets(map[Service][]Target{llq: {{"1-2.example.net.", 1}}})},
		// The same target for both transports is allowed.
		{Input: "srv-discovery {\n update ns1.members.example.com. 53\n update ns1.members.example.com. 53 tls\n}",
			Check: targets(map[Service][]Target{update: {{ns1, 53}}, updateTLS: {{ns1, 53}}})},

		// Missing lines.
		{Input: "srv-discovery", WantErr: "at least one line"},
		{Input: "srv-discovery {\n}", WantErr: "at least one line"},
		{Input: "srv-discovery members.example.com", WantErr: "Wrong argument count"},
		{Input: "srv-discovery members.example.com {\n llq ns1 5352\n}", WantErr: "Wrong argument count"},
		// Unknown service.
		{Input: "srv-discovery {\n query ns1.members.example.com. 853 tls\n}", WantErr: "unknown service"},
		{Input: "srv-discovery {\n UPDATE ns1.members.example.com. 53\n}", WantErr: "unknown service"},
		{Input: "srv-discovery {\n dns-update ns1.members.example.com. 53\n}", WantErr: "unknown service"},
		// Argument count.
		{Input: "srv-discovery {\n update\n}", WantErr: "Wrong argument count"},
		{Input: "srv-discovery {\n update ns1.members.example.com.\n}", WantErr: "Wrong argument count"},
		{Input: "srv-discovery {\n update ns1.members.example.com. 853 tls extra\n}", WantErr: "Wrong argument count"},
		// Bad port.
		{Input: "srv-discovery {\n update ns1.members.example.com. 0\n}", WantErr: "invalid port"},
		{Input: "srv-discovery {\n update ns1.members.example.com. 65536\n}", WantErr: "invalid port"},
		{Input: "srv-discovery {\n update ns1.members.example.com. -53\n}", WantErr: "invalid port"},
		{Input: "srv-discovery {\n update ns1.members.example.com. +53\n}", WantErr: "invalid port"},
		{Input: "srv-discovery {\n update ns1.members.example.com. domain\n}", WantErr: "invalid port"},
		{Input: "srv-discovery {\n update ns1.members.example.com. tls 853\n}", WantErr: "invalid port"},
		// Bad target.
		{Input: "srv-discovery {\n update . 53\n}", WantErr: "invalid target"},
		{Input: "srv-discovery {\n update 192.0.2.53 53\n}", WantErr: "invalid target"},
		{Input: "srv-discovery {\n update 2001:db8::53 53\n}", WantErr: "invalid target"},
		{Input: "srv-discovery {\n update ns1..example.com. 53\n}", WantErr: "invalid target"},
		{Input: "srv-discovery {\n update -ns1.example.com. 53\n}", WantErr: "invalid target"},
		{Input: "srv-discovery {\n update ns1-.example.com. 53\n}", WantErr: "invalid target"},
		{Input: "srv-discovery {\n update _dns.example.com. 53\n}", WantErr: "invalid target"},
		{Input: "srv-discovery {\n update ns1.exa\\.mple.com. 53\n}", WantErr: "invalid target"},
		{Input: "srv-discovery {\n update " + strings.Repeat("a", 64) + ".example.com. 53\n}", WantErr: "invalid target"},
		{Input: "srv-discovery {\n update " + strings.Repeat("abcdefghi.", 26) + " 53\n}", WantErr: "invalid target"},
		// Unknown flag.
		{Input: "srv-discovery {\n update ns1.members.example.com. 853 TLS\n}", WantErr: "unknown flag"},
		{Input: "srv-discovery {\n update ns1.members.example.com. 853 tcp\n}", WantErr: "unknown flag"},
		{Input: "srv-discovery {\n update ns1.members.example.com. 853 fallback\n}", WantErr: "unknown flag"},
		// A repeated line.
		{Input: "srv-discovery {\n llq ns1.members.example.com. 5352\n llq NS1.members.example.com 5352\n}", WantErr: "more than once"},
		// A repeated directive.
		{Input: "srv-discovery {\n llq ns1 5352\n}\nsrv-discovery {\n llq ns2 5352\n}", WantErr: "only be used once"},
		{Input: "srv-discovery\nsrv-discovery {\n llq ns2 5352\n}", WantErr: "only be used once"},
	})
}

// targets checks the targets a block parsed to, each service's in order.
func targets(want map[Service][]Target) func(testing.TB, *SrvDiscovery) {
	return func(t testing.TB, s *SrvDiscovery) {
		if !maps.EqualFunc(s.targets, want, slices.Equal) {
			t.Errorf("targets %v, want %v", s.targets, want)
		}
	}
}
