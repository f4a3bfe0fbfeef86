package srvdiscovery

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

func TestParse(t *testing.T) {
	const ns1, ns2 = "ns1.members.example.com.", "ns2.members.example.com."
	var (
		update    = Service{"update", false}
		updateTLS = Service{"update", true}
		llq       = Service{"llq", false}
		llqTLS    = Service{"llq", true}
	)
	tests := []struct {
		input   string
		wantErr string // a part of the error, or "" for none
		targets map[Service][]Target
	}{
		{input: "srv-discovery {\n update ns1.members.example.com. 853 tls\n update ns1.members.example.com. 53\n llq ns1.members.example.com. 853 tls\n llq ns1.members.example.com. 5352\n}",
			targets: map[Service][]Target{updateTLS: {{ns1, 853}}, update: {{ns1, 53}}, llqTLS: {{ns1, 853}}, llq: {{ns1, 5352}}}},
		// Several targets for one service, in the order given; names
		// made fully qualified and lowercase.
		{input: "srv-discovery {\n update NS1.Members.Example.com 853 tls\n update ns2.members.example.com. 853 tls\n update ns1.members.example.com. 8853 tls\n}",
			targets: map[Service][]Target{updateTLS: {{ns1, 853}, {ns2, 853}, {ns1, 8853}}}},
		{input: "srv-discovery {\n llq llq.example.net 5352\n}",
			targets: map[Service][]Target{llq: {{"llq.example.net.", 5352}}}},
		{input: "srv-discovery {\n llq x 65535\n}",
			targets: map[Service][]Target{llq: {{"x.", 65535}}}},
		{input: "srv-discovery {\n llq 1-2.example.net. 1\n}",
			targets: map[Service][]Target{llq: {{"1-2.example.net.", 1}}}},
		// The same target for both transports is allowed.
		{input: "srv-discovery {\n update ns1.members.example.com. 53\n update ns1.members.example.com. 53 tls\n}",
			targets: map[Service][]Target{update: {{ns1, 53}}, updateTLS: {{ns1, 53}}}},

		// Missing lines.
		{input: "srv-discovery", wantErr: "at least one line"},
		{input: "srv-discovery {\n}", wantErr: "at least one line"},
		{input: "srv-discovery members.example.com", wantErr: "Wrong argument count"},
		{input: "srv-discovery members.example.com {\n llq ns1 5352\n}", wantErr: "Wrong argument count"},
		// Unknown service.
		{input: "srv-discovery {\n query ns1.members.example.com. 853 tls\n}", wantErr: "unknown service"},
		{input: "srv-discovery {\n UPDATE ns1.members.example.com. 53\n}", wantErr: "unknown service"},
		{input: "srv-discovery {\n dns-update ns1.members.example.com. 53\n}", wantErr: "unknown service"},
		// Argument count.
		{input: "srv-discovery {\n update\n}", wantErr: "Wrong argument count"},
		{input: "srv-discovery {\n update ns1.members.example.com.\n}", wantErr: "Wrong argument count"},
		{input: "srv-discovery {\n update ns1.members.example.com. 853 tls extra\n}", wantErr: "Wrong argument count"},
		// Bad port.
		{input: "srv-discovery {\n update ns1.members.example.com. 0\n}", wantErr: "invalid port"},
		{input: "srv-discovery {\n update ns1.members.example.com. 65536\n}", wantErr: "invalid port"},
		{input: "srv-discovery {\n update ns1.members.example.com. -53\n}", wantErr: "invalid port"},
		{input: "srv-discovery {\n update ns1.members.example.com. +53\n}", wantErr: "invalid port"},
		{input: "srv-discovery {\n update ns1.members.example.com. domain\n}", wantErr: "invalid port"},
		{input: "srv-discovery {\n update ns1.members.example.com. tls 853\n}", wantErr: "invalid port"},
		// Bad target.
		{input: "srv-discovery {\n update . 53\n}", wantErr: "invalid target"},
		{input: "srv-discovery {\n update 192.0.2.53 53\n}", wantErr: "invalid target"},
		{input: "srv-discovery {\n update 2001:db8::53 53\n}", wantErr: "invalid target"},
		{input: "srv-discovery {\n update ns1..example.com. 53\n}", wantErr: "invalid target"},
		{input: "srv-discovery {\n update -ns1.example.com. 53\n}", wantErr: "invalid target"},
		{input: "srv-discovery {\n update ns1-.example.com. 53\n}", wantErr: "invalid target"},
		{input: "srv-discovery {\n update _dns.example.com. 53\n}", wantErr: "invalid target"},
		{input: "srv-discovery {\n update ns1.exa\\.mple.com. 53\n}", wantErr: "invalid target"},
		{input: "srv-discovery {\n update " + strings.Repeat("a", 64) + ".example.com. 53\n}", wantErr: "invalid target"},
		{input: "srv-discovery {\n update " + strings.Repeat("abcdefghi.", 26) + " 53\n}", wantErr: "invalid target"},
		// Unknown flag.
		{input: "srv-discovery {\n update ns1.members.example.com. 853 TLS\n}", wantErr: "unknown flag"},
		{input: "srv-discovery {\n update ns1.members.example.com. 853 tcp\n}", wantErr: "unknown flag"},
		{input: "srv-discovery {\n update ns1.members.example.com. 853 fallback\n}", wantErr: "unknown flag"},
		// A repeated line.
		{input: "srv-discovery {\n llq ns1.members.example.com. 5352\n llq NS1.members.example.com 5352\n}", wantErr: "more than once"},
		// A repeated directive.
		{input: "srv-discovery {\n llq ns1 5352\n}\nsrv-discovery {\n llq ns2 5352\n}", wantErr: "only be used once"},
		{input: "srv-discovery\nsrv-discovery {\n llq ns2 5352\n}", wantErr: "only be used once"},
	}
	for _, tc := range tests {
		t.Run(tc.input, func(t *testing.T) {
			s, err := parse(caddy.NewTestController("dns", tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if !maps.EqualFunc(s.targets, tc.targets, slices.Equal) {
				t.Errorf("targets %v, want %v", s.targets, tc.targets)
			}
		})
	}
}
