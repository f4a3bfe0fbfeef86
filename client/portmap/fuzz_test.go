package portmap

import (
	"encoding/binary"
	"net/netip"
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

// FuzzParsePCPResponse checks that any datagram from the gateway parses
// without panicking, that what is accepted is a well-formed PCP
// response (RFC 6887 §7: version 2, R set, 24 to 1100 octets, a multiple
// of 4, 60 at least for MAP), and that the MAP fields are read from
// where §11.1 puts them.
func FuzzParsePCPResponse(f *testing.F) {
	for _, s := range []string{
		"02 81 00 00 00000e10 0000002a 000000000000000000000000" +
			"0102030405060708090a0b0c 11 000000 1194 9c40 00000000000000000000ffff c6336407",
		"02 81 00 02 0000001e 0000002a 000000000000000000000000" +
			"0102030405060708090a0b0c 11 000000 1194 0000 00000000000000000000ffff 00000000",
		"02 80 00 00 00000000 00000007 000000000000000000000000",
		"00 81 0001 0000002a",
		"01 81 00 01 00000000 0000002a 000000000000000000000000",
		"",
	} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parsePCPResponse(b)
		if err != nil {
			return
		}
		if len(b) < 24 || len(b) > 1100 || len(b)%4 != 0 || b[0] != 2 || b[1]&0x80 == 0 || b[3] == 1 {
			t.Fatalf("accepted %x", b)
		}
		if r.opcode != b[1]&0x7f || uint8(r.result) != b[3] || r.lifetime != binary.BigEndian.Uint32(b[4:8]) || r.epoch != binary.BigEndian.Uint32(b[8:12]) {
			t.Fatalf("header of %x parsed as %+v", b, r)
		}
		if r.opcode != pcpOpMap {
			return
		}
		if len(b) < 60 {
			t.Fatalf("accepted a MAP response of %d octets", len(b))
		}
		if [12]byte(b[24:36]) != r.nonce || r.protocol != b[36] || r.internal != binary.BigEndian.Uint16(b[40:42]) ||
			r.extPort != binary.BigEndian.Uint16(b[42:44]) || r.extAddr.As16() != netip.AddrFrom16([16]byte(b[44:60])).As16() {
			t.Fatalf("MAP payload of %x parsed as %+v", b, r)
		}
	})
}
