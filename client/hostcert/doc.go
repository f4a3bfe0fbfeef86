// Package hostcert makes the tunnel's trust rest on a key only the user
// holds, not on the server: a user signing key (Ed25519), certificates by
// which it vouches for each host's static X25519 key, and a signed list of
// revoked host keys. It does no I/O on the network: the daemon publishes
// and watches what it makes and checks.
//
// # Why
//
// A host's static key is published in a TXT record that the server serves,
// and anyone holding the user's TSIG key, which the server holds, can write
// that record. Without this package, whoever runs the server (or breaks
// into it) could publish a host of its own in a user's domain and be let
// into the user's tunnels. With it, a host is accepted by its peers only if
// its key comes with a certificate signed by the user key that each peer
// pinned when it was enrolled; the server never sees the user key's
// private half, so it cannot make one.
//
// # The user key
//
// An Ed25519 key pair per user (RFC 8032). Its private half is a 32-octet
// seed, either random (btmm-client keygen --user-key FILE) or derived from
// the user's password (DeriveUserKey):
//
//	seed = Argon2id(password, salt = "btmm-userkey-v1:" + user domain,
//	                time 3, memory 64 MiB, 4 lanes, 32 octets)
//
// with the user domain lowercase and fully qualified
// ("alice.members.example.com."), and the Argon2id parameters of package
// client/secret. The TSIG secret is Argon2id of the same password under the
// salt "btmm-tsig-v1:DOMAIN:ALG": the password gives both keys, and neither
// key gives the other or the password. Its key ID is the first 8 octets of
// SHA-256 of the 32-octet public key.
//
// Each enrolled host keeps, in its state directory:
//
//   - user.pub (PinFile): the pinned public key or keys, one base64 line
//     each; a certificate is accepted under any of them (two while the
//     user key is being replaced).
//   - user.key (KeyFile, mode 0600): the private seed, on the hosts that
//     sign (their own certificate, and revocation lists). Every host
//     enrolled from the password holds it; a user who would rather keep it
//     on fewer hosts enrolls the others with the public key alone, and
//     hands each a certificate made on a signing host (btmm-client
//     certify) as host.cert (CertFile).
//
// While the user key is replaced, a host pins and holds both (the new one
// first): it accepts a certificate under either, and publishes one under
// each key it holds (a "cert=" string each), so that hosts still pinning
// only the old key accept it too. Then the old key is dropped.
//
// # Certificate (cert=), version 1
//
// Published in the host's TXT record at its label, after pk= (one string
// per signing key; a peer accepts the host if any one is valid): "cert=" followed by the standard padded base64 of these 137 octets
// (184 characters, so the TXT string is 189 octets, under RFC 1035's 255):
//
//	offset length
//	0      1      version, 1
//	1      8      user key ID: SHA-256(user public key)[0:8]
//	9      8      not before: Unix seconds, unsigned, big-endian
//	17     8      not after:  Unix seconds, unsigned, big-endian
//	25     16     the host's ULA (its tunnel address)
//	41     32     the host's static X25519 public key (the one pk= gives)
//	73     64     Ed25519 signature
//
// The signature is over
//
//	"btmm host cert v1\x00" ‖ octets 0 to 72 ‖ the host's name
//
// where the host's name (HOST.USER.ZONE.) is in DNS wire format, lowercase
// (RFC 4034 §6.2's canonical form). The name is signed but not carried:
// the verifier knows it already (it followed the host list to it), and
// leaving it out keeps the certificate in one TXT string whatever the
// zone's name. The context string starts every signed message, and differs
// between certificates and revocation lists, so that a signature of one
// kind is never valid as the other.
//
// A peer accepts a host (Verify) only if the certificate parses, its key ID
// names a pinned key, the signature verifies under that key over the
// host's name, ULA and static key as the host's records give them, now is
// within [not before, not after], and the static key is not revoked.
//
// # Revocation list, version 1
//
// Published in the user's domain as one TXT record at
// _btmm-revoked.USER.ZONE (RevocationName): "txtvers=1" followed by strings
// "rl=" + a chunk of at most 248 base64 characters; the chunks, in order,
// are the standard padded base64 of:
//
//	offset  length
//	0       1      version, 1
//	1       8      user key ID
//	9       8      serial: unsigned, big-endian; higher replaces lower
//	17      2      n, the number of revoked keys, big-endian (at most 1024)
//	19      32·n   the revoked static X25519 public keys, in ascending order
//	19+32n  64     Ed25519 signature
//
// signed over "btmm revocations v1\x00" ‖ octets 0 to 18+32n ‖ the user's
// domain in canonical wire format. A peer keeps the valid list with the
// highest serial it has seen (in its state directory, so that neither a
// restart nor a server that serves an older list brings a revoked key
// back), and refuses any host whose static key is on it. The signer's
// serial is the Unix time in nanoseconds at signing, so that two lists
// signed a moment apart on two hosts still order.
package hostcert
