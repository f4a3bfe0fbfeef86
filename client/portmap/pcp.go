package portmap

import "encoding/binary"

// PCP (RFC 6887) is spoken here only as far as needed to hear a gateway's
// ANNOUNCE: this package asks for mappings with NAT-PMP alone.
const (
	pcpVersion       = 2
	pcpHeaderLen     = 24   // the common response header
	pcpMaxLen        = 1100 // RFC 6887 §7
	pcpResponseBit   = 0x80 // R, in the second byte
	pcpOpAnnounce    = 0
	pcpResultSuccess = 0
)

// parsePCPAnnounce parses an unsolicited PCP ANNOUNCE response (RFC 6887
// §14.1.3): version 2, R set, opcode 0, result SUCCESS, at least the 24
// bytes of the common header (miniupnpd sends exactly those), at most 1100
// and a multiple of 4 (§7). It returns the header's epoch time.
func parsePCPAnnounce(b []byte) (epoch uint32, ok bool) {
	if len(b) < pcpHeaderLen || len(b) > pcpMaxLen || len(b)%4 != 0 {
		return 0, false
	}
	if b[0] != pcpVersion || b[1] != pcpResponseBit|pcpOpAnnounce || b[3] != pcpResultSuccess {
		return 0, false
	}
	return binary.BigEndian.Uint32(b[8:12]), true
}
