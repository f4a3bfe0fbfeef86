package daemon

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/openbtmm/btmm/client/portmap"
)

// TestUnusable: which mappings leave the host to publish the endpoint the
// server sees.
func TestUnusable(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, c := range []struct {
		what string
		m    portmap.Mapping
		want bool
	}{
		{"a mapping on a public address", portmap.Mapping{External: ap("203.0.113.7:4500"), Internal: 4500}, false},
		{"no NAT, a public address", portmap.Mapping{Public: true, External: ap("23.3.3.10:4500")}, false},
		{"no mapping", portmap.Mapping{Err: errors.New("no answer")}, true},
		{"a mapping on a carrier's shared address", portmap.Mapping{External: ap("100.64.0.2:4500"), Internal: 4500}, true},
		{"a mapping on a private address", portmap.Mapping{External: ap("192.168.0.2:4500"), Internal: 4500}, true},
		{"no NAT here, but a private address (a routed private network)", portmap.Mapping{Public: true, External: ap("10.20.0.10:4500")}, true},
	} {
		if got := unusable(c.m); got != c.want {
			t.Errorf("%s: unusable = %v, want %v", c.what, got, c.want)
		}
	}
}
