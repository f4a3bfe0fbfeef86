package esp

import (
	"encoding/hex"
	"net/netip"
	"strconv"
)

// Key logging for Wireshark/tshark. Off by default: nothing in this package
// writes key material anywhere. The CLI renders the line on request (a debug
// flag) and appends it to the file Wireshark reads its ESP SAs from, the
// "esp_sa" UAT file in the Wireshark profile directory (or passes it with
// tshark -o "uat:esp_sa:<line>"), together with the preference
// esp.enable_encryption_decode:TRUE.
//
// One record is eight comma-separated, double-quoted fields:
//
//	"IPv4","<src>","<dst>","0x<SPI, 8 hex digits>","<encryption>","0x<key ‖ salt hex>","NULL",""
//
//   - protocol: "IPv4" or "IPv6", the family of the outer IP header that
//     carries the (UDP-encapsulated) ESP packet, not the inner ULA one.
//   - source, destination: outer addresses, or "*" as a wildcard. BTMM's
//     outer addresses change with the network while the SA lives on (SAs
//     are bound to the ULAs), so "*" is the useful default; the SPI is what
//     identifies the SA.
//   - SPI: "0x" and 8 hex digits.
//   - encryption: Wireshark's own label (esp_encryption_type_vals in
//     epan/dissectors/packet-ipsec.c): "AES-GCM with 16 octet ICV [RFC4106]"
//     or "ChaCha20 with Poly1305 [RFC7634]". Wireshark takes the salt as the
//     last 4 octets of the key, as RFC 4106 §8.1 keys it.
//   - encryption key: "0x" and the hex of key ‖ salt (36 octets).
//   - authentication: "NULL", since the AEAD ICV is checked by the
//     encryption algorithm; authentication key: empty.
//
// Caveats. The labels were checked against strings in Wireshark builds of
// the 3.x/4.x era; the record has had these eight fields for as long as the
// table has existed, but newer releases may add columns (extended sequence
// number handling) and would then expect more fields per line. Wireshark
// does not know an SA uses ESN unless told: without the high half in its
// AAD it still decrypts (both suites are stream ciphers) but marks the ICV
// as unverified or bad.

// keyLogLabels are Wireshark's names for our suites.
var keyLogLabels = [...]string{
	AES256GCM:        "AES-GCM with 16 octet ICV [RFC4106]",
	ChaCha20Poly1305: "ChaCha20 with Poly1305 [RFC7634]",
}

// AppendKeyLog appends the SA as one line (with a trailing newline) of
// Wireshark's esp_sa UAT file to b. src and dst are the outer addresses of
// the packets this SA protects, in its direction; an invalid (zero)
// netip.Addr is written as the wildcard "*". The protocol is IPv6 if either
// address is a (non-mapped) IPv6 address, IPv4 otherwise, which is BTMM's
// outer family.
//
// The line contains the SA's key: write it only where the user asked.
func (sa *SA) AppendKeyLog(b []byte, src, dst netip.Addr) []byte {
	proto := "IPv4"
	if is6(src) || is6(dst) {
		proto = "IPv6"
	}
	b = appendQuoted(b, proto)
	b = append(b, ',')
	b = appendAddr(b, src)
	b = append(b, ',')
	b = appendAddr(b, dst)
	b = append(b, `,"0x`...)
	spi := strconv.FormatUint(uint64(sa.spi), 16)
	for range 8 - len(spi) {
		b = append(b, '0')
	}
	b = append(b, spi...)
	b = append(b, `",`...)
	b = appendQuoted(b, keyLogLabels[sa.suite])
	b = append(b, `,"0x`...)
	b = hex.AppendEncode(b, sa.keymat[:])
	b = append(b, `","NULL",""`...)
	return append(b, '\n')
}

func is6(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }

func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return appendQuoted(b, "*")
	}
	b = append(b, '"')
	b = a.Unmap().AppendTo(b)
	return append(b, '"')
}

// appendQuoted quotes s for a UAT file. Our fields never contain '"' or
// '\\', so no escaping is needed.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
