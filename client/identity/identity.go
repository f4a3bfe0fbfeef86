// Package identity is who a btmm-client host is: its Unique Local Address
// (the inner address of every tunnel, RFC 6281 §6.3), the EUI-64 behind its
// AutoTunnel-… label (RFC 6281 §3), and the static X25519 key pair whose
// public half it publishes in its TXT record (key.go).
//
// # Raw versus modified EUI-64
//
// An EUI-64 comes in two spellings (RFC 4291 Appendix A): the raw IEEE one,
// where a MAC's three OUI octets and three extension octets have FF-FE put
// between them, and the "modified" one used as an IPv6 interface identifier,
// the same with the universal/local bit (0x02 of the first octet) inverted.
// RFC 6281 and Apple's shipped code differ here; this
// package uses each where its own standard puts it:
//
//   - The label carries the raw EUI-64. RFC 6281 §3's example
//     AutoTunnel-00-22-69-FF-FE-8E-34-2A is the raw EUI-64 of MAC
//     00:22:69:8E:34:2A, and the project publishes RFC 6281's form.
//     Apple's code wrote the modified one (02-22-69-…).
//   - The ULA's interface identifier (octets 8–15) is the modified EUI-64.
//     RFC 6281 §6.3 puts "the EUI-64 of the primary interface" there; an
//     interface identifier made from an EUI-64 is, by RFC 4291 §2.5.1 and
//     RFC 4193 §3.1 (which takes its Interface ID from RFC 4291), in modified
//     EUI-64 format. Apple's code did the same, so for a given MAC our ULA's
//     interface identifier is the one an Apple host would have had.
//
// So the label and the last 8 octets of the ULA differ in one bit. Nothing
// derives one from the other: peers learn the ULA from the AAAA record at
// the label (AutoTunnel-...) and the label from the SRV target (RFC 6281 §5.3), and ParseLabel
// accepts any 8 hex octets, so that labels in either spelling parse.
package identity

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
)

// LabelPrefix starts every AutoTunnel label (RFC 6281 §3).
const LabelPrefix = "AutoTunnel-"

// Identity is what names one host for as long as its btmm-client runs. RFC
// 6281 §6.2 keeps the ULA until shutdown and never regenerates it on a
// network change (a new ULA would break every open connection): make one with New at start-up
// and keep it.
type Identity struct {
	// ULA is fd00::/8 with 7 random octets and the modified EUI-64 as the
	// interface identifier (RFC 6281 §6.3, RFC 4291 Appendix A).
	ULA netip.Addr
	// EUI64 is the raw IEEE EUI-64 of the primary interface, or a random
	// locally administered one when that interface has no usable MAC.
	EUI64 [8]byte
	// Label is "AutoTunnel-" and EUI64 as 8 uppercase hex octets joined by
	// "-": the first label of the SRV target (RFC 6281 §3).
	Label string
	// Interface is the name of the interface the EUI-64 came from, as
	// given to New; it may be empty.
	Interface string
}

// New makes the identity of a host whose primary interface is iface with
// hardware address mac, reading its random octets from rnd (crypto/rand's
// Reader in production).
//
// The ULA is 0xFD followed by 7 octets from rnd (the 40-bit Global ID and
// 16-bit Subnet ID of RFC 4193 §3, all random as RFC 6281 §6.3 has it), then
// the modified EUI-64.
//
// The EUI-64 comes from mac:
//   - a 6-octet MAC (EUI-48) gives OUI, FF, FE, extension (RFC 4291
//     Appendix A);
//   - an 8-octet hardware address (IEEE 1394, for example) is already an
//     EUI-64 and is used as it is;
//   - anything else — no address (tun, ppp and WireGuard interfaces have
//     none), another length (InfiniBand's 20 octets), all zeros, or a group
//     (multicast) address, which no interface should own — gives 8 more
//     octets from rnd with the universal/local bit set to "local" and the
//     individual/group bit cleared, so that the label cannot pass for a
//     real IEEE-assigned identifier. LoadOrNew keeps it, with the ULA.
func New(iface string, mac net.HardwareAddr, rnd io.Reader) (Identity, error) {
	var ula [16]byte
	ula[0] = 0xfd
	if _, err := io.ReadFull(rnd, ula[1:8]); err != nil {
		return Identity{}, fmt.Errorf("identity: reading random octets for the ULA: %w", err)
	}
	eui, ok := EUI64FromMAC(mac)
	if !ok {
		if _, err := io.ReadFull(rnd, eui[:]); err != nil {
			return Identity{}, fmt.Errorf("identity: reading random octets for the EUI-64: %w", err)
		}
		eui[0] = eui[0]&^0x01 | 0x02 // individual, locally administered
	}
	iid := ModifiedEUI64(eui)
	copy(ula[8:], iid[:])
	return Identity{
		ULA:       netip.AddrFrom16(ula),
		EUI64:     eui,
		Label:     Label(eui),
		Interface: iface,
	}, nil
}

// EUI64FromMAC gives the raw EUI-64 of a hardware address: for a 6-octet MAC,
// FF-FE between its OUI and its extension (RFC 4291 Appendix A); an 8-octet
// address is returned as it is. ok is false for any other length, for the
// all-zero address and for group (multicast) addresses.
func EUI64FromMAC(mac net.HardwareAddr) (eui [8]byte, ok bool) {
	switch len(mac) {
	case 6:
		copy(eui[0:3], mac[0:3])
		eui[3], eui[4] = 0xff, 0xfe
		copy(eui[5:8], mac[3:6])
	case 8:
		copy(eui[:], mac)
	default:
		return eui, false
	}
	if mac[0]&0x01 != 0 || bytes.Count(mac, []byte{0}) == len(mac) {
		return [8]byte{}, false
	}
	return eui, true
}

// ModifiedEUI64 is the IPv6 interface identifier of a raw EUI-64: the same
// octets with the universal/local bit inverted (RFC 4291 §2.5.1 and
// Appendix A). It is its own inverse.
func ModifiedEUI64(eui [8]byte) [8]byte {
	eui[0] ^= 0x02
	return eui
}

// Label is the AutoTunnel label for an EUI-64 as RFC 6281 §3 writes it:
// "AutoTunnel-" and 8 uppercase hex octets joined by "-". Pass the raw
// EUI-64 for RFC 6281's form (as New does).
func Label(eui [8]byte) string {
	var b strings.Builder
	b.Grow(len(LabelPrefix) + 8*3 - 1)
	b.WriteString(LabelPrefix)
	for i, o := range eui {
		if i > 0 {
			b.WriteByte('-')
		}
		fmt.Fprintf(&b, "%02X", o)
	}
	return b.String()
}

// ErrNotLabel is returned by ParseLabel for a string that is not an
// AutoTunnel label.
var ErrNotLabel = errors.New("not an AutoTunnel-XX-XX-XX-XX-XX-XX-XX-XX label")

// ParseLabel reads the 8 octets of an AutoTunnel label, whichever EUI-64
// they hold (RFC 6281 writes the raw one, Apple's code the modified one).
// Like the DNS, it ignores case, in the prefix and in the hex digits.
func ParseLabel(label string) ([8]byte, error) {
	var eui [8]byte
	if len(label) != len(LabelPrefix)+8*3-1 || !strings.EqualFold(label[:len(LabelPrefix)], LabelPrefix) {
		return eui, ErrNotLabel
	}
	s := label[len(LabelPrefix):]
	for i := range eui {
		if i > 0 && s[3*i-1] != '-' {
			return [8]byte{}, ErrNotLabel
		}
		if _, err := hex.Decode(eui[i:i+1], []byte(s[3*i:3*i+2])); err != nil {
			return [8]byte{}, ErrNotLabel
		}
	}
	return eui, nil
}
