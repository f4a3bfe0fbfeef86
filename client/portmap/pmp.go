package portmap

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// NAT-PMP wire constants (RFC 6886 §3). Requests and their responses are
// go-nat-pmp's business; this package parses only announcements.
const (
	// DefaultServerPort is the UDP port a NAT-PMP gateway listens on (and
	// the only one go-nat-pmp sends to).
	DefaultServerPort = 5351
	// DefaultAnnouncePort is the UDP port gateways multicast announcements
	// to, on the all-hosts group 224.0.0.1.
	DefaultAnnouncePort = 5350

	pmpVersion      = 0
	opExternalReply = 128 // the external address response, which is also the announcement
	extReplyLen     = 12  // its length
)

// ResultCode is the result field of a NAT-PMP response (RFC 6886 §3.5).
type ResultCode uint16

// The result codes of RFC 6886 §3.5.
const (
	ResultSuccess            ResultCode = 0
	ResultUnsupportedVersion ResultCode = 1
	ResultNotAuthorized      ResultCode = 2 // not authorized, or refused (e.g. NAT-PMP switched off, or a manual mapping)
	ResultNetworkFailure     ResultCode = 3 // the gateway has no external address: often a double NAT (RFC 6281 §4.4)
	ResultOutOfResources     ResultCode = 4
	ResultUnsupportedOpcode  ResultCode = 5
)

// String returns the code's name from RFC 6886 §3.5, or "result N" for a
// code the RFC does not define.
func (r ResultCode) String() string {
	switch r {
	case ResultSuccess:
		return "success"
	case ResultUnsupportedVersion:
		return "unsupported version"
	case ResultNotAuthorized:
		return "not authorized/refused"
	case ResultNetworkFailure:
		return "network failure"
	case ResultOutOfResources:
		return "out of resources"
	case ResultUnsupportedOpcode:
		return "unsupported opcode"
	}
	return "result " + strconv.Itoa(int(r))
}

// announcement is a datagram heard on the announcement port.
type announcement struct {
	pcp      bool       // a PCP ANNOUNCE (version 2), not a NAT-PMP one
	epoch    uint32     // the sender's epoch, as claimed
	external netip.Addr // NAT-PMP only
}

// parseAnnouncement parses a datagram sent to 224.0.0.1:5350: a NAT-PMP
// external address response (RFC 6886 §3.2.1; opcode 128, result 0) or a
// PCP ANNOUNCE response (RFC 6887 §14.1.3; version 2, R set, opcode 0),
// which is all that miniupnpd sends after a restart. Anything else,
// including PCP responses that are not ANNOUNCE, reports false.
func parseAnnouncement(b []byte) (announcement, bool) {
	if len(b) == 0 {
		return announcement{}, false
	}
	switch b[0] {
	case pmpVersion:
		// Bytes past the 12 of the response are ignored.
		if len(b) < extReplyLen || b[1] != opExternalReply || ResultCode(binary.BigEndian.Uint16(b[2:4])) != ResultSuccess {
			return announcement{}, false
		}
		return announcement{
			epoch:    binary.BigEndian.Uint32(b[4:8]),
			external: netip.AddrFrom4([4]byte(b[8:12])), // raw bytes, never swapped (spec §9.1)
		}, true
	case pcpVersion:
		epoch, ok := parsePCPAnnounce(b)
		return announcement{pcp: true, epoch: epoch}, ok
	}
	return announcement{}, false
}
