package store

import (
	"errors"
	"strings"

	"github.com/miekg/dns"
)

// Key encodes name for an ordered key-value engine: its labels from the
// root down, each as a length octet and the label in lowercase. Every name
// below a name has that name's key as a prefix and no other key does, so a
// subtree is one range of keys. Names equal but for ASCII case (or for how
// their presentation form escapes octets) get the same key.
func Key(name string) ([]byte, error) {
	if k, ok := plainKey(name); ok {
		return k, nil
	}
	return packedKey(name)
}

// plainKey is Key for a name with no escapes, the form every name on the
// query path has: it walks the labels from the end of the string. It
// reports false for anything else (escapes, empty or long labels, names
// over 255 octets), which packedKey then decodes or refuses. It is the
// query path's hot spot: packedKey's buffers grew each query's stack.
func plainKey(name string) ([]byte, bool) {
	if strings.IndexByte(name, '\\') >= 0 {
		return nil, false
	}
	s := strings.TrimSuffix(name, ".")
	if len(s)+2 > 255 {
		return nil, false
	}
	key := make([]byte, 0, len(s)+1)
	for end := len(s); end > 0; {
		start := strings.LastIndexByte(s[:end], '.') + 1
		n := end - start
		if n == 0 || n > 63 {
			return nil, false
		}
		key = append(key, byte(n))
		for i := start; i < end; i++ {
			c := s[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			key = append(key, c)
		}
		if start == 0 {
			break
		}
		end = start - 1
		if end == 0 {
			return nil, false // a name that starts with a dot
		}
	}
	return key, true
}

// packedKey is Key for any name: it packs the name into wire form, which
// resolves escapes and checks lengths, then reverses the labels.
func packedKey(name string) ([]byte, error) {
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
