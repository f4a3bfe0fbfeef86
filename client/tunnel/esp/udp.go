package esp

import "encoding/binary"

// UDP encapsulation (RFC 3948): ESP, handshake messages and NAT keepalives
// share one UDP port and are told apart by their first octets.

// Kind is what a UDP payload on the tunnel port carries.
type Kind uint8

const (
	// Invalid is none of the below: drop it.
	Invalid Kind = iota
	// ESP is an ESP packet; the payload starts with its SPI.
	ESP
	// Keepalive is a NAT keepalive, a single 0xFF octet (RFC 3948 §2.3).
	// Ignore it; it is not a sign of life of the peer (§4).
	Keepalive
	// NonESP is a handshake message behind the non-ESP marker (RFC 3948
	// §2.2, where it carries IKE).
	NonESP
)

func (k Kind) String() string {
	switch k {
	case ESP:
		return "esp"
	case Keepalive:
		return "keepalive"
	case NonESP:
		return "non-esp"
	}
	return "invalid"
}

const (
	// KeepaliveByte is the whole payload of a NAT keepalive.
	KeepaliveByte = 0xFF
	// NonESPMarkerLen is the four zero octets, where an SPI would be, that
	// precede a non-ESP (handshake) message.
	NonESPMarkerLen = 4
	// minClassifiedESP is RFC 3948 §2.1's "at least 8 octets" (SPI and
	// Seq); Open applies the real minimum.
	minClassifiedESP = SPILen + SeqLen
)

// Classify demultiplexes a UDP payload received on the tunnel port. It
// returns the payload to hand on: the whole packet for ESP (SPI first), the
// message after the marker for NonESP, nil otherwise. It does not allocate.
//
// An SPI in 1..255 is Invalid: those are reserved (RFC 4303 §2.1), NewSA
// refuses them, so no SA of ours can match. An empty message behind the
// marker is Invalid too.
func Classify(b []byte) (Kind, []byte) {
	if len(b) == 1 {
		if b[0] == KeepaliveByte {
			return Keepalive, nil
		}
		return Invalid, nil
	}
	if len(b) < NonESPMarkerLen {
		return Invalid, nil
	}
	spi := binary.BigEndian.Uint32(b)
	switch {
	case spi == 0:
		if len(b) == NonESPMarkerLen {
			return Invalid, nil
		}
		return NonESP, b[NonESPMarkerLen:]
	case spi < reservedSPIsBelow || len(b) < minClassifiedESP:
		return Invalid, nil
	}
	return ESP, b
}

// PacketSPI returns the SPI of an ESP packet that Classify accepted, for
// looking up the inbound SA.
func PacketSPI(b []byte) uint32 {
	return binary.BigEndian.Uint32(b)
}

// AppendNonESPMarker appends the non-ESP marker to b; the handshake message
// goes after it.
func AppendNonESPMarker(b []byte) []byte {
	return append(b, 0, 0, 0, 0)
}

// AppendKeepalive appends a NAT keepalive payload (one 0xFF octet) to b.
// Send one when behind a NAT and idle toward the peer for 20 s (RFC 3948 §4).
func AppendKeepalive(b []byte) []byte {
	return append(b, KeepaliveByte)
}
