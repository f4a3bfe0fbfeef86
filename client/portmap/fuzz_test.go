package portmap

import (
	"encoding/binary"
	"testing"
)

// FuzzParseAnnouncement checks that any datagram on the announcement port
// parses without panicking and that only the two announcement forms are
// accepted.
func FuzzParseAnnouncement(f *testing.F) {
	for _, s := range []string{
		"0080 0000 00000005 cb007109",
		"0080 0003 00000005 00000000",
		"02 80 00 00 00000000 0000002a 000000000000000000000000",
		"02 81 00 00 00000000 0000002a 000000000000000000000000",
		"",
	} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := parseAnnouncement(b)
		if !ok {
			return
		}
		if a.pcp {
			if len(b) < 24 || len(b) > 1100 || len(b)%4 != 0 || b[0] != 2 || b[1] != 0x80 || b[3] != 0 {
				t.Fatalf("accepted %x as PCP ANNOUNCE", b)
			}
			if a.epoch != binary.BigEndian.Uint32(b[8:12]) {
				t.Fatalf("epoch of %x parsed as %d", b, a.epoch)
			}
			return
		}
		if len(b) < 12 || b[0] != 0 || b[1] != 128 || b[2] != 0 || b[3] != 0 || !a.external.Is4() {
			t.Fatalf("accepted %x as a NAT-PMP announcement: %+v", b, a)
		}
	})
}
