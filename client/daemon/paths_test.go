package daemon

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/openbtmm/btmm/client/watch"
)

// TestPeerEndpoints: the tunnel gets a peer's IPv6 endpoint first, then
// its IPv4 one, and only those it has.
func TestPeerEndpoints(t *testing.T) {
	v4 := netip.MustParseAddrPort("23.2.2.2:4500")
	v6 := netip.MustParseAddrPort("[2001:db8:2:1::b]:4500")
	for _, tt := range []struct {
		p    watch.Peer
		want []netip.AddrPort
	}{
		{watch.Peer{Public: v4, Public6: v6}, []netip.AddrPort{v6, v4}},
		{watch.Peer{Public: v4}, []netip.AddrPort{v4}},
		{watch.Peer{Public6: v6}, []netip.AddrPort{v6}},
		{watch.Peer{}, nil},
	} {
		if got := peerEndpoints(tt.p); !slices.Equal(got, tt.want) {
			t.Errorf("peerEndpoints(%+v) = %v, want %v", tt.p, got, tt.want)
		}
	}
}
