package portmap

import (
	"fmt"
	"strings"
)

// Protocol is a port mapping protocol a gateway may speak.
type Protocol uint8

// The protocols, in DefaultOrder's order. The zero Protocol is none: no
// mapping is held (a public network, or no protocol was answered).
const (
	ProtoNone   Protocol = iota
	ProtoPCP             // Port Control Protocol, RFC 6887
	ProtoNATPMP          // NAT Port Mapping Protocol, RFC 6886
	ProtoUPnP            // UPnP Internet Gateway Device, WANIPConnection:2 or :1
)

// DefaultOrder is the order in which a Client asks a gateway when
// Config.Protocols is nil: PCP, then NAT-PMP, then UPnP IGD (see the
// package documentation for why).
var DefaultOrder = []Protocol{ProtoPCP, ProtoNATPMP, ProtoUPnP}

// String returns the protocol's usual name: "PCP", "NAT-PMP", "UPnP IGD",
// or "none".
func (p Protocol) String() string {
	switch p {
	case ProtoNone:
		return "none"
	case ProtoPCP:
		return "PCP"
	case ProtoNATPMP:
		return "NAT-PMP"
	case ProtoUPnP:
		return "UPnP IGD"
	}
	return fmt.Sprintf("protocol %d", uint8(p))
}

// Key returns the protocol's short lower-case name, as used in JSON,
// metric labels and configuration: "pcp", "natpmp", "upnp", or "" for
// none.
func (p Protocol) Key() string {
	switch p {
	case ProtoPCP:
		return "pcp"
	case ProtoNATPMP:
		return "natpmp"
	case ProtoUPnP:
		return "upnp"
	}
	return ""
}

// ParseProtocol parses a Key (case-insensitive; "nat-pmp" and "upnp-igd"
// are accepted too).
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "pcp":
		return ProtoPCP, nil
	case "natpmp", "nat-pmp":
		return ProtoNATPMP, nil
	case "upnp", "upnp-igd", "igd":
		return ProtoUPnP, nil
	}
	return ProtoNone, fmt.Errorf("portmap: unknown protocol %q (want pcp, natpmp or upnp)", s)
}

// protocolList names the protocols of ps for messages: "PCP, NAT-PMP or
// UPnP IGD".
func protocolList(ps []Protocol) string {
	var names []string
	for _, p := range ps {
		names = append(names, p.String())
	}
	switch len(names) {
	case 0:
		return "no protocol"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
