package esp

import (
	"encoding/hex"
	"net/netip"
	"strconv"
)

// Key logging for Wireshark/tshark, the ESP counterpart of TLS's
// SSLKEYLOGFILE. Off by default: nothing in this package writes key
// material anywhere. btmm-client writes these lines only when asked
// (run --esp-keylog FILE, or esp_keylog in the config file); the file is
// then Wireshark's "esp_sa" table (a UAT file): copy or link it as esp_sa
// into a Wireshark configuration directory (or point WIRESHARK_CONFIG_DIR
// at a directory holding it), or pass each line with
// tshark -o 'uat:esp_sa:<line>', together with the preferences
// esp.enable_encryption_decode:TRUE and esp.enable_authentication_check:TRUE.
// Wireshark decodes UDP-encapsulated ESP (RFC 3948) on port 4500 only; for
// another tunnel port add -d udp.port==PORT,udpencap.
//
// One record is ten comma-separated, double-quoted fields:
//
//	"IPv4","*","*","0x<SPI>","AES-GCM with 16 octet ICV [RFC4106]","0x<key ‖ salt>","NULL","","64-bit","0"
//
//   - protocol: "IPv4" or "IPv6", the family of the outer IP header that
//     carries the (UDP-encapsulated) ESP packet, not the inner ULA one.
//   - source, destination: outer addresses, or "*" as a wildcard. BTMM's
//     outer addresses change with the network while the SA lives on (SAs
//     are bound to the ULAs), so "*" is what the tunnel writes; the SPI is
//     what identifies the SA.
//   - SPI: "0x" and 8 hex digits.
//   - encryption: Wireshark's label for the suite, "AES-GCM with 16 octet
//     ICV [RFC4106]" or "ChaCha20 with Poly1305 [RFC7634]". Wireshark takes
//     the salt as the last 4 octets of the key, as RFC 4106 §8.1 and
//     RFC 7634 §2 key it.
//   - encryption key: "0x" and the hex of key ‖ salt (36 octets).
//   - authentication: "NULL" (the AEAD's ICV is checked by the encryption
//     algorithm); authentication key: empty.
//   - sequence number length: "64-bit" for an ESN SA (every BTMM SA),
//     "32-bit" otherwise.
//   - ESN high bits: the high 32 bits of the sequence number, in hex. It is
//     fixed per record, so "0": a BTMM SA is rekeyed after minutes, long
//     before its 2^32nd packet.
//
// What was verified, and against what. Run against tshark 4.0.17 (Debian
// 12, package 4.0.17-0+deb12u3) with packets this package sealed and with
// the lab's pings across two NATs (test/lab_keylog_test.go):
//
//   - 4.0.17 reads the first eight fields; it warns once per line "More
//     fields than required. Discarding" and uses the record. (Fewer than
//     eight is an error.)
//   - With an AES-256-GCM record it decrypts our packets and finds the
//     inner IPv6 packets: our ESP and its RFC 3948 encapsulation are
//     standard.
//   - 4.0.17 has no ESN support: it authenticates SPI ‖ 32-bit sequence
//     number, not RFC 4106 §5's SPI ‖ 64-bit sequence number, so it
//     reports the ICV of every ESN packet as incorrect (esp.icv_bad) while
//     decrypting it correctly (GCM's keystream does not depend on the
//     AAD). For an SA made with NoESN it reports the ICV good. Wireshark
//     issue 19658 reported the same for ESN SAs against 4.2.2.
//   - 4.0.17 does not know ChaCha20-Poly1305 for ESP: it rejects such a
//     record ("invalid value"), and in an esp_sa file it stops reading at
//     that line (the records above it stay in use). BTMM prefers
//     AES-256-GCM, so keep the default suites when decoding with 4.0.
//
// Read, not run: the esp_sa columns of a newer packet-ipsec.c (from a
// build of Wireshark's main branch, release unknown) are these ten, the
// ninth "sn_length" ("32-bit" or "64-bit") and the tenth "sn_upper" ("ESN
// High Bits", hex, default "0"), and its label list has "ChaCha20 with
// Poly1305 [RFC7634]". That is what the last two fields are for: such a
// Wireshark should verify the ICV of ESN packets too.

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
	b = append(b, `","NULL","",`...)
	if sa.esn {
		b = appendQuoted(b, "64-bit")
	} else {
		b = appendQuoted(b, "32-bit")
	}
	b = append(b, `,"0"`...)
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
