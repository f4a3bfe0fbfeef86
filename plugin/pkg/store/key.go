package store

import (
	"errors"

	"github.com/miekg/dns"
)

// Key encodes name for an ordered key-value engine: its labels from the
// root down, each as a length octet and the label in lowercase. Every name
// below a name has that name's key as a prefix and no other key does, so a
// subtree is one range of keys. Names equal but for ASCII case (or for how
// their presentation form escapes octets) get the same key.
func Key(name string) ([]byte, error) {
	var wire [256]byte
	end, err := dns.PackDomainName(dns.Fqdn(name), wire[:], 0, nil, false)
	if err != nil {
		return nil, err
	}
	// Find each label's start; the last octet is the root's zero length.
	var starts [128]int
	n := 0
	for off := 0; off < end-1; off += int(wire[off]) + 1 {
		starts[n] = off
		n++
	}
	key := make([]byte, 0, end-1)
	for i := n - 1; i >= 0; i-- {
		l := wire[starts[i] : starts[i]+1+int(wire[starts[i]])]
		key = append(key, l[0])
		for _, c := range l[1:] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			key = append(key, c)
		}
	}
	return key, nil
}

// ErrBadKey is returned by KeyName for octets that Key cannot have made.
var ErrBadKey = errors.New("store: malformed name key")

// KeyName decodes a key made by Key into a lowercase, fully qualified name.
func KeyName(key []byte) (string, error) {
	var starts [128]int
	n := 0
	for off := 0; off < len(key); off += int(key[off]) + 1 {
		if key[off] == 0 || off+1+int(key[off]) > len(key) || n == len(starts) {
			return "", ErrBadKey
		}
		starts[n] = off
		n++
	}
	if len(key)+1 > 255 {
		return "", ErrBadKey
	}
	wire := make([]byte, 0, len(key)+1)
	for i := n - 1; i >= 0; i-- {
		wire = append(wire, key[starts[i]:starts[i]+1+int(key[starts[i]])]...)
	}
	wire = append(wire, 0)
	name, _, err := dns.UnpackDomainName(wire, 0)
	if err != nil {
		return "", ErrBadKey
	}
	return name, nil
}

// Canonical returns name lowercase and fully qualified, the form that
// Zone, Event and Owner use.
func Canonical(name string) string { return dns.CanonicalName(name) }
