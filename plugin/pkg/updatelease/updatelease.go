// Package updatelease encodes and decodes the UPDATE-LEASE EDNS(0) option
// of RFC 9664, with which a DNS Update requester asks for, and a server
// grants, a lifetime for the records the update adds.
//
// The option data is one or two 32-bit unsigned integers in network
// order:
//
//	+---------------------------+
//	| LEASE      (4 octets)     |  lease of the records, in seconds
//	+---------------------------+
//	| KEY-LEASE  (4 octets)     |  optional: lease of KEY records, in seconds
//	+---------------------------+
//
// so OPTION-LENGTH is 4 or 8; any other length is malformed.
//
// # miekg/dns and option code 2
//
// miekg/dns knows this option as EDNS0_UL and, when unpacking a message,
// turns every option with code 2 into a *dns.EDNS0_UL. Three things
// follow, which this package works around or documents:
//
//   - A code-2 option whose length is neither 4 nor 8 makes
//     (*dns.Msg).Unpack fail for the whole message (with the misleading
//     dns.ErrBuf, "buffer size too small"), and drops the additional
//     section. A server built on miekg/dns therefore answers such a
//     request with FORMERR before any handler sees it, and From never
//     meets a malformed option in an unpacked message. From still checks,
//     for messages built in memory.
//   - EDNS0_UL packs KEY-LEASE only when it is non-zero, and unpacks an
//     8-byte option whose KEY-LEASE is 0 to the same value as a 4-byte
//     one. It cannot say "8 bytes, KEY-LEASE 0", which a response to an
//     8-byte request with KEY-LEASE 0 must (RFC 9664 answers an 8-byte
//     option with an 8-byte one). Option therefore returns a
//     *dns.EDNS0_LOCAL, which packs exactly the bytes of Encode; and From,
//     given an EDNS0_UL, can only report HasKeyLease when KEY-LEASE != 0.
//   - Nothing stops a message from carrying option 2 twice; From refuses
//     that, since a server cannot tell which lease was meant.
package updatelease

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/miekg/dns"
)

// Code is the EDNS(0) option code of UPDATE-LEASE (RFC 9664, Section 4).
// It is the same as dns.EDNS0UL.
const Code = 2

// Errors returned, wrapped, by Decode and From; test for them with
// errors.Is. Both call for a FORMERR response.
var (
	// ErrMalformed reports option data whose length is not 4 or 8.
	ErrMalformed = errors.New("malformed UPDATE-LEASE option")
	// ErrDuplicate reports an OPT RR with more than one UPDATE-LEASE option.
	ErrDuplicate = errors.New("more than one UPDATE-LEASE option")
)

// Lease is the content of an UPDATE-LEASE option.
//
// The values are exposed exactly as on the wire. The original draft
// (draft-sekar-dns-ul) defined LEASE as a signed 32-bit integer, so a
// value of 2^31 or more may come from an implementation that meant it as
// negative; this package does not judge. Callers must clamp such values
// (or reject them as malformed) before using them as durations, and
// should in any case clamp to their own minimum and maximum lease.
type Lease struct {
	// Lease is the lease of the records in the update, in seconds.
	Lease uint32
	// KeyLease is the lease of any KEY records in the update, in
	// seconds. It is meaningful only if HasKeyLease is set.
	KeyLease uint32
	// HasKeyLease says whether the option has the KEY-LEASE field, that
	// is whether it is 8 bytes long rather than 4. RFC 9664 has a server
	// answer in the same form it was asked in.
	HasKeyLease bool
}

// Decode decodes UPDATE-LEASE option data: the bytes after OPTION-CODE
// and OPTION-LENGTH. A length other than 4 or 8 is ErrMalformed.
func Decode(b []byte) (Lease, error) {
	switch len(b) {
	case 4:
		return Lease{Lease: binary.BigEndian.Uint32(b)}, nil
	case 8:
		return Lease{
			Lease:       binary.BigEndian.Uint32(b),
			KeyLease:    binary.BigEndian.Uint32(b[4:]),
			HasKeyLease: true,
		}, nil
	}
	return Lease{}, fmt.Errorf("%w: length %d, want 4 or 8", ErrMalformed, len(b))
}

// Encode returns the option data for l: 8 bytes if l.HasKeyLease, else 4
// (and KeyLease is ignored).
func (l Lease) Encode() []byte {
	b := make([]byte, 4, 8)
	binary.BigEndian.PutUint32(b, l.Lease)
	if l.HasKeyLease {
		b = binary.BigEndian.AppendUint32(b, l.KeyLease)
	}
	return b
}

// Option returns l as an option for an OPT RR.
//
// It is a *dns.EDNS0_LOCAL rather than a *dns.EDNS0_UL because the latter
// cannot pack an 8-byte option with a KEY-LEASE of 0 (see the package
// documentation). The peer's miekg/dns will still unpack it as an
// EDNS0_UL: the type only matters to the sender.
func (l Lease) Option() dns.EDNS0 {
	return &dns.EDNS0_LOCAL{Code: Code, Data: l.Encode()}
}

// From returns the UPDATE-LEASE option of m.
//
// ok is false if m has no OPT RR or its OPT RR has no option 2. err is
// set, wrapping ErrMalformed or ErrDuplicate, if the option has the wrong
// length or appears more than once. If m somehow has several OPT RRs (a
// FORMERR in itself, RFC 6891), From looks only at the one
// (*dns.Msg).IsEdns0 returns.
//
// For an option that miekg/dns unpacked, HasKeyLease is set only if
// KEY-LEASE is non-zero: miekg/dns does not keep the length, and a zero
// KEY-LEASE looks the same as none.
func From(m *dns.Msg) (l Lease, ok bool, err error) {
	if m == nil {
		return Lease{}, false, nil
	}
	opt := m.IsEdns0()
	if opt == nil {
		return Lease{}, false, nil
	}
	for _, o := range opt.Option {
		if o.Option() != Code {
			continue
		}
		if ok {
			return Lease{}, false, ErrDuplicate
		}
		ok = true
		switch o := o.(type) {
		case *dns.EDNS0_UL:
			l = Lease{Lease: o.Lease, KeyLease: o.KeyLease, HasKeyLease: o.KeyLease != 0}
		case *dns.EDNS0_LOCAL:
			if l, err = Decode(o.Data); err != nil {
				return Lease{}, false, err
			}
		default:
			// Some other type claiming code 2: not one miekg/dns
			// makes, so not one we know how to read.
			return Lease{}, false, fmt.Errorf("%w: unexpected option type %T", ErrMalformed, o)
		}
	}
	return l, ok, nil
}
