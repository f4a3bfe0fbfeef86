package portmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// PCP (RFC 6887) wire format, as far as this package speaks it: the MAP
// opcode for one UDP port over IPv4, and ANNOUNCE (heard, never sent).
//
// Every PCP message starts with a 24-octet common header. A request's is
//
//	0  version (2) | 1  R=0, opcode | 2  reserved (2) | 4  requested lifetime (s)
//	8  client's IP address (16 octets; IPv4 as the IPv4-mapped ::ffff:a.b.c.d)
//
// and a response's is
//
//	0  version (2) | 1  R=1, opcode | 2  reserved | 3  result code
//	4  lifetime (s) | 8  epoch time (s) | 12 reserved (12 octets)
//
// MAP (opcode 1) adds 36 octets, laid out alike in request and response:
//
//	0  mapping nonce (12 random octets) | 12 protocol (17 = UDP) | 13 reserved (3)
//	16 internal port | 18 suggested (request) / assigned (response) external port
//	20 suggested / assigned external address (16 octets; IPv4-mapped)
//
// so a MAP message without options is 60 octets. Options (code, reserved,
// 16-bit length, data padded to 4 octets) may follow; this client sends
// none and ignores those of responses. A message is at most 1100 octets
// and a multiple of 4.
const (
	pcpVersion       = 2
	pcpHeaderLen     = 24   // the common header
	pcpMaxLen        = 1100 // RFC 6887 §7
	pcpResponseBit   = 0x80 // R, in the second octet
	pcpOpAnnounce    = 0
	pcpOpMap         = 1
	pcpMapLen        = pcpHeaderLen + 36 // a MAP message without options
	pcpNonceLen      = 12
	pcpResultSuccess = 0
	protoUDP         = 17 // IANA protocol number
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

// PCPResultCode is the result field of a PCP response (RFC 6887 §7.4).
type PCPResultCode uint8

// The result codes of RFC 6887 §7.4.
const (
	PCPSuccess               PCPResultCode = 0
	PCPUnsuppVersion         PCPResultCode = 1
	PCPNotAuthorized         PCPResultCode = 2
	PCPMalformedRequest      PCPResultCode = 3
	PCPUnsuppOpcode          PCPResultCode = 4
	PCPUnsuppOption          PCPResultCode = 5
	PCPMalformedOption       PCPResultCode = 6
	PCPNetworkFailure        PCPResultCode = 7 // the gateway has no external address: often a double NAT
	PCPNoResources           PCPResultCode = 8
	PCPUnsuppProtocol        PCPResultCode = 9
	PCPUserExQuota           PCPResultCode = 10
	PCPCannotProvideExternal PCPResultCode = 11
	PCPAddressMismatch       PCPResultCode = 12 // a NAT that does not speak PCP sits between host and gateway
	PCPExcessiveRemotePeers  PCPResultCode = 13
)

var pcpResultNames = [...]string{
	"SUCCESS", "UNSUPP_VERSION", "NOT_AUTHORIZED", "MALFORMED_REQUEST", "UNSUPP_OPCODE",
	"UNSUPP_OPTION", "MALFORMED_OPTION", "NETWORK_FAILURE", "NO_RESOURCES", "UNSUPP_PROTOCOL",
	"USER_EX_QUOTA", "CANNOT_PROVIDE_EXTERNAL", "ADDRESS_MISMATCH", "EXCESSIVE_REMOTE_PEERS",
}

// String returns the code's name from RFC 6887 §7.4, or "result N".
func (r PCPResultCode) String() string {
	if int(r) < len(pcpResultNames) {
		return pcpResultNames[r]
	}
	return "result " + strconv.Itoa(int(r))
}

// PCPResultError is a PCP response with a result code other than
// SUCCESS: the gateway speaks PCP but will not (or cannot) map the port.
type PCPResultError struct {
	Op   string // "map UDP" or "delete UDP"
	Code PCPResultCode
	// Lifetime is how long the gateway expects the condition to last
	// (RFC 6887 §7.2: the response's lifetime field for an error).
	Lifetime time.Duration
}

func (e *PCPResultError) Error() string {
	return fmt.Sprintf("portmap: PCP %s: result %d (%v)", e.Op, uint8(e.Code), e.Code)
}

// pcpResponse is a parsed PCP response: the common header and, for MAP,
// the MAP payload.
type pcpResponse struct {
	opcode   uint8
	result   PCPResultCode
	lifetime uint32
	epoch    uint32
	// MAP only.
	nonce    [pcpNonceLen]byte
	protocol uint8
	internal uint16
	extPort  uint16
	extAddr  netip.Addr // unmapped: IPv4 for an IPv4-mapped address
}

// errPCPVersion is what a gateway that does not speak PCP version 2
// answers: a NAT-PMP gateway answers a PCP request with NAT-PMP's result
// 1, Unsupported Version (RFC 6886 §1.1 and §3.5), and a PCP server of
// another version with UNSUPP_VERSION (RFC 6887 §9). Either way the
// gateway has no PCP for us.
var errPCPVersion = errors.New("unsupported version")

// parsePCPResponse parses a datagram from the gateway's port 5351 in
// answer to a PCP request. It returns errPCPVersion for a NAT-PMP
// Unsupported Version answer (version 0, result 1, at least the 8 octets
// of that answer) or a PCP UNSUPP_VERSION response, and another error for
// anything that is not a well-formed PCP response: shorter than the
// common header, longer than 1100 octets or not a multiple of 4 (§7), R
// not set, another version, a MAP response shorter than 60 octets. It
// does not check that the response answers our request (nonce, port):
// the caller does.
func parsePCPResponse(b []byte) (pcpResponse, error) {
	var r pcpResponse
	if len(b) >= 8 && b[0] == pmpVersion && (b[1] == 0 || b[1] >= 128) && ResultCode(binary.BigEndian.Uint16(b[2:4])) == ResultUnsupportedVersion {
		return r, errPCPVersion
	}
	switch {
	case len(b) < 4:
		return r, fmt.Errorf("%d octets", len(b))
	case b[1]&pcpResponseBit == 0:
		return r, errors.New("a request, not a response")
	case b[0] != pcpVersion && PCPResultCode(b[3]) == PCPUnsuppVersion:
		return r, errPCPVersion
	case b[0] != pcpVersion:
		return r, fmt.Errorf("version %d", b[0])
	case len(b) < pcpHeaderLen || len(b) > pcpMaxLen || len(b)%4 != 0:
		return r, fmt.Errorf("%d octets", len(b))
	}
	r.opcode = b[1] &^ pcpResponseBit
	r.result = PCPResultCode(b[3])
	r.lifetime = binary.BigEndian.Uint32(b[4:8])
	r.epoch = binary.BigEndian.Uint32(b[8:12])
	if r.result == PCPUnsuppVersion {
		return r, errPCPVersion
	}
	if r.opcode != pcpOpMap {
		return r, nil
	}
	if len(b) < pcpMapLen {
		return r, fmt.Errorf("a MAP response of %d octets", len(b))
	}
	p := b[pcpHeaderLen:]
	copy(r.nonce[:], p[:pcpNonceLen])
	r.protocol = p[12]
	r.internal = binary.BigEndian.Uint16(p[16:18])
	r.extPort = binary.BigEndian.Uint16(p[18:20])
	r.extAddr = netip.AddrFrom16([16]byte(p[20:36])).Unmap()
	return r, nil
}

// pcpMapRequest encodes a MAP request for UDP port internal from client
// (the source address of the request: a PCP server answers
// ADDRESS_MISMATCH if they differ), suggesting extPort and extAddr (an
// invalid extAddr, or port 0, says "no preference"), for lifetime
// seconds (0 deletes the mapping).
func pcpMapRequest(client netip.Addr, nonce [pcpNonceLen]byte, internal, extPort uint16, extAddr netip.Addr, lifetime uint32) []byte {
	b := make([]byte, pcpMapLen)
	b[0], b[1] = pcpVersion, pcpOpMap
	binary.BigEndian.PutUint32(b[4:8], lifetime)
	putPCPAddr(b[8:24], client)
	p := b[pcpHeaderLen:]
	copy(p[:pcpNonceLen], nonce[:])
	p[12] = protoUDP
	binary.BigEndian.PutUint16(p[16:18], internal)
	binary.BigEndian.PutUint16(p[18:20], extPort)
	putPCPAddr(p[20:36], extAddr)
	return b
}

// putPCPAddr writes a as PCP's 16-octet address: an IPv4 address as
// IPv4-mapped IPv6 (RFC 6887 §5), an invalid one as ::ffff:0.0.0.0, the
// IPv4 "no preference" (§11.1).
func putPCPAddr(b []byte, a netip.Addr) {
	if !a.IsValid() {
		a = netip.IPv4Unspecified()
	}
	if a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	s := a.As16()
	copy(b, s[:])
}

// pcpEpoch applies RFC 6887 §8.5's check to one server's epoch times. Its
// zero value has seen nothing. A server's epoch is taken to be invalid
// (the server lost its state) if it went back by more than one second,
// or if it and the client's clock disagree on the time since the last
// response by more than 2 s plus 1/16:
//
//	client_delta + 2 < server_delta - server_delta/16, or
//	server_delta + 2 < client_delta - client_delta/16.
type pcpEpoch struct {
	valid  bool
	server uint32    // the last epoch time
	at     time.Time // local time it arrived
}

// observe records a response with epoch time epoch at now and reports
// whether the server lost its state since the previous one.
func (e *pcpEpoch) observe(epoch uint32, now time.Time) (lost bool) {
	if e.valid {
		if int64(epoch)+1 < int64(e.server) {
			lost = true
		} else {
			client := max(now.Sub(e.at).Seconds(), 0)
			server := float64(int64(epoch) - int64(e.server))
			lost = client+2 < server-server/16 || server+2 < client-client/16
		}
	}
	e.valid, e.server, e.at = true, epoch, now
	return lost
}
