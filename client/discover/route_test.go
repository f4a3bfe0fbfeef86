package discover

import (
	"crypto/tls"
	"strings"
	"testing"
)

// TestRouteTo: one decision for publisher and watcher. Transport "tls"
// takes only DNS-over-TLS servers and reaches them over TLS named after
// the SRV target; "tcp" and "udp" take only the plain server, over their
// own network, even where a TLS one is offered first; a configured server
// is used as it is, over the transport.
func TestRouteTo(t *testing.T) {
	both := newFakeDNS(t, zoneData(t, true,
		"_dns-llq-tls._tcp."+user+" 300 IN SRV 0 0 853 tls.members.example.com.",
		"_dns-llq._udp."+user+" 300 IN SRV 0 0 5352 plain.members.example.com.",
		"tls.members.example.com. 300 IN A 192.0.2.2",
		"plain.members.example.com. 300 IN A 192.0.2.1"))
	base := &tls.Config{MinVersion: tls.VersionTLS13}
	for _, tc := range []struct {
		transport, server, addr, network, serverName string
	}{
		{"tls", "", "192.0.2.2:853", "tcp-tls", "tls.members.example.com"},
		{"tcp", "", "192.0.2.1:5352", "tcp", ""},
		{"udp", "", "192.0.2.1:5352", "udp", ""},
		{"tls", "10.0.0.1:853", "10.0.0.1:853", "tcp-tls", ""},
		{"udp", "10.0.0.1:53", "10.0.0.1:53", "udp", ""},
	} {
		rt, err := both.resolver().RouteTo(t.Context(), LLQ, user, zone, tc.transport, tc.server, base)
		if err != nil {
			t.Fatalf("%s %q: %v", tc.transport, tc.server, err)
		}
		if rt.Addr != tc.addr || rt.Network != tc.network {
			t.Errorf("%s %q: %s over %s, want %s over %s", tc.transport, tc.server, rt.Addr, rt.Network, tc.addr, tc.network)
		}
		switch {
		case tc.network != "tcp-tls" && rt.TLS != nil:
			t.Errorf("%s: TLS settings for a plain route", tc.transport)
		case tc.network == "tcp-tls" && (rt.TLS == nil || rt.TLS == base || rt.TLS.MinVersion != tls.VersionTLS13 || rt.TLS.ServerName != tc.serverName):
			t.Errorf("%s %q: TLS %+v, want a clone of base named %q", tc.transport, tc.server, rt.TLS, tc.serverName)
		}
	}

	// A zone with TLS only: nothing for a plain transport, and the error
	// says why.
	tlsOnly := newFakeDNS(t, zoneData(t, true,
		"_dns-update-tls._tcp."+user+" 300 IN SRV 0 0 853 tls.members.example.com.",
		"tls.members.example.com. 300 IN A 192.0.2.2"))
	if _, err := tlsOnly.resolver().RouteTo(t.Context(), Update, user, zone, "tcp", "", nil); err == nil || !strings.Contains(err.Error(), `transport "tcp"`) {
		t.Errorf("plain transport, TLS-only zone: %v", err)
	}
	if _, err := tlsOnly.resolver().RouteTo(t.Context(), Update, user, zone, "quic", "", nil); err == nil {
		t.Error("an unknown transport was taken")
	}
}
