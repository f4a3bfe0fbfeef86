// Package handshake is the key exchange between two hosts of one user that
// sets up a Back to My Mac tunnel: it authenticates both ends and produces
// fresh keys for the two ESP security associations (one per direction) that
// carry the tunnel. Each end's static key is the one published in its host's
// TXT record, which only the user's TSIG key can write.
//
// # Protocol
//
// The handshake is the Noise protocol
//
//	Noise_IKpsk2_25519_ChaChaPoly_SHA256
//
// run with github.com/flynn/noise. IK fits because the initiator already
// knows the responder's static X25519 public key (from the responder's TXT
// record, certified by the user's signing key on an enrolled host), so one
// round trip authenticates both ends and the initiator's identity travels
// encrypted. psk2 mixes a pre-shared key into the end of message 2, as
// WireGuard does. The caller chooses it (package daemon): derived from
// the user's TSIG secret on hosts not enrolled with a user key, public on
// enrolled ones, whose trust rests on the certified static keys instead.
//
// Why SHA256 rather than BLAKE2s: the handshake runs once per tunnel and
// rekey, so speed does not matter; SHA-256 is in the standard library (with
// assembly on every platform we build for, and inside Go's FIPS module),
// and the ESP key derivation below can use the standard crypto/hkdf with the
// same hash. ChaChaPoly is constant time without AES hardware, which small
// home routers and old Macs may lack. The handshake's own AEAD is unrelated
// to the ESP cipher suite, which the two ends negotiate inside the handshake.
//
// # Wire format
//
// A handshake message travels in a UDP datagram on the same port as ESP,
// after the four zero octets of RFC 3948's non-ESP marker (where ESP has its
// SPI, which is never 0). This package neither adds nor expects the marker:
// the transport strips it before calling [Responder.Respond] or
// [Initiation.Finish] and prepends it to what they return ([NonESPMarker]).
// Integers are big-endian. After the marker:
//
// Initiation (type 1), 1+4+(32+48+(33+n)+16)+16+16 octets, n offered suites:
//
//	0      type = 1
//	1..4   sender index (initiator's, random; echoed in replies)
//	5..    Noise message 1: e (32) ‖ encrypted s (32+16) ‖ encrypted payload
//	       payload = TAI64N timestamp (12) ‖ ULA (16) ‖ SPI (4) ‖
//	                 n (1, 1..8) ‖ n suite ids (preference order)
//	-32    mac1 (16): HMAC-SHA256(SHA256("mac1----" ‖ responder static
//	       public key), all preceding octets), truncated
//	-16    mac2 (16): HMAC-SHA256(cookie, all preceding octets) truncated,
//	       or zeros when the initiator holds no cookie
//
// Response (type 2), 1+4+4+(32+21+16) = 78 octets:
//
//	0      type = 2
//	1..4   sender index (responder's, random)
//	5..8   receiver index (the initiation's sender index)
//	9..    Noise message 2: e (32) ‖ encrypted payload
//	       payload = ULA (16) ‖ SPI (4) ‖ chosen suite id (1)
//
// Cookie reply (type 3), 1+4+4+24+(16+16) = 65 octets:
//
//	0      type = 3
//	1..4   sender index (zero; a busy responder keeps no state)
//	5..8   receiver index (the initiation's sender index)
//	9..32  nonce (24, random)
//	33..   XChaCha20-Poly1305(key = SHA256("cookie--" ‖ responder static
//	       public key), nonce, cookie (16), AD = mac1 of the initiation)
//
// The Noise prologue is "BTMM handshake v1" followed by the initiation's
// first five octets, so the type and the initiator's sender index are bound
// into the transcript. The responder's sender index is an unauthenticated
// hint; the receiver index only finds the pending [Initiation], and a wrong
// one just fails.
//
// SPIs (RFC 4303 §2.1): each side picks the SPI it will receive on; it must
// be ≥ 256 (0 is reserved and doubles as the non-ESP marker, 1–255 are
// IANA's). Suite ids: 1 = AES-256-GCM with 16-octet ICV (RFC 4106),
// 2 = ChaCha20-Poly1305 (RFC 7634).
//
// # Keys
//
// Noise's Split gives one 32-octet key per direction. Each ESP KEYMAT (key
// 32 ‖ salt 4, RFC 4106 §8.1 and RFC 7634 §2) is
//
//	HKDF-Expand-SHA256(split key, "BTMM ESP v1" ‖ suite ‖ SPI, 36)
//
// where SPI is the SPI of that SA (chosen by its receiver), so keys are bound
// to the SA they serve and the Noise transport keys are never used as is.
//
// # Replay and key confirmation
//
// Message 1 carries a TAI64N timestamp, as in WireGuard. The responder
// remembers the greatest timestamp it accepted per initiator static key and
// refuses an initiation whose timestamp is not greater, so a recorded
// initiation cannot be replayed to make it drop a working SA. Only keys the
// caller allows (same user's hosts) get a table entry, so the table is
// bounded by the host list; a hard cap guards the rest.
//
// In IKpsk2 the responder cannot tell whether the initiator knew the PSK:
// the PSK is mixed in after message 1, so [Responder.Respond] succeeds for
// any initiator holding a static key the caller allows. A wrong PSK shows up
// as [ErrAuth] from [Initiation.Finish] and, on the responder, as keys that
// decrypt nothing. The responder must therefore install its inbound SA but
// not send on its outbound SA (nor drop an older working SA) until the first
// ESP packet from the initiator authenticates under the new inbound SA.
//
// # Cookies
//
// Processing an initiation costs four X25519 operations; one from a spoofed
// source costs the sender nothing. As in WireGuard, every initiation ends in
// two MACs. mac1 is keyed with the responder's public key: anyone who knows
// it can compute it, but it lets the responder drop, before any DH,
// datagrams not meant for it. mac2 is keyed with a cookie, a MAC of the
// datagram's source address and port under a secret that rotates every two
// minutes ([CookieMaker]). A responder under load answers initiations whose
// mac2 is not valid with a cookie reply instead of processing them; the
// initiator decrypts the cookie ([Initiation.ConsumeCookie]) and its next
// initiation carries a valid mac2, proving it receives traffic at its
// source address. The cookie reply is encrypted so that only someone who
// knows the responder's public key can read it, and bound to the mac1 of
// the initiation it answers so it cannot be injected blindly. How "under
// load" is decided is left to the caller ([Responder.RespondFrom]).
package handshake
