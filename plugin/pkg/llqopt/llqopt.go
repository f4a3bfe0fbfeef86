// Package llqopt holds the constants of DNS Long-Lived Queries (RFC 8764)
// and reads and writes its EDNS(0) option, which miekg/dns parses into
// *dns.EDNS0_LLQ.
package llqopt

import (
	"fmt"

	"github.com/miekg/dns"
)

// RFC 8764 §3.1 and §9.
const (
	Code    = dns.EDNS0LLQ // EDNS(0) option code 1
	Version = 1
	Port    = 5352 // the LLQ port, for UDP and TCP

	// RemoveTTL is the TTL that marks a removed record in an event (§6.2).
	RemoveTTL = 0xFFFFFFFF
)

// Opcode is the LLQ-OPCODE field.
type Opcode uint16

// LLQ opcodes (§3.2).
const (
	Setup   Opcode = 1
	Refresh Opcode = 2
	Event   Opcode = 3
)

func (o Opcode) String() string {
	switch o {
	case Setup:
		return "SETUP"
	case Refresh:
		return "REFRESH"
	case Event:
		return "EVENT"
	}
	return fmt.Sprintf("OPCODE%d", uint16(o))
}

// Error is the LLQ-ERROR field.
type Error uint16

// LLQ errors (§3.2).
const (
	NoError    Error = 0
	ServFull   Error = 1
	Static     Error = 2
	FormatErr  Error = 3
	NoSuchLLQ  Error = 4
	BadVers    Error = 5
	UnknownErr Error = 6
)

func (e Error) String() string {
	switch e {
	case NoError:
		return "NO-ERROR"
	case ServFull:
		return "SERV-FULL"
	case Static:
		return "STATIC"
	case FormatErr:
		return "FORMAT-ERR"
	case NoSuchLLQ:
		return "NO-SUCH-LLQ"
	case BadVers:
		return "BAD-VERS"
	case UnknownErr:
		return "UNKNOWN-ERR"
	}
	return fmt.Sprintf("ERROR%d", uint16(e))
}

// Option is one LLQ option.
type Option struct {
	Opcode Opcode
	Error  Error
	ID     uint64
	Lease  uint32 // seconds
}

// EDNS0 returns o as an option of version 1 for an OPT RR.
func (o Option) EDNS0() *dns.EDNS0_LLQ {
	return &dns.EDNS0_LLQ{Code: Code, Version: Version, Opcode: uint16(o.Opcode), Error: uint16(o.Error), Id: o.ID, LeaseLife: o.Lease}
}

// ErrVersion is returned by From for an option of another version.
type ErrVersion uint16

func (e ErrVersion) Error() string {
	return fmt.Sprintf("llq: version %d, want %d", uint16(e), Version)
}

// From returns the LLQ options in m's OPT RR, in order (one per question).
// It returns ErrVersion if any has a version other than 1.
func From(m *dns.Msg) ([]Option, error) {
	opt := m.IsEdns0()
	if opt == nil {
		return nil, nil
	}
	var out []Option
	for _, e := range opt.Option {
		l, ok := e.(*dns.EDNS0_LLQ)
		if !ok {
			continue
		}
		if l.Version != Version {
			return nil, ErrVersion(l.Version)
		}
		out = append(out, Option{Opcode: Opcode(l.Opcode), Error: Error(l.Error), ID: l.Id, Lease: l.LeaseLife})
	}
	return out, nil
}

// Set puts opts into m's OPT RR (made with udpSize if m has none),
// replacing any LLQ options there.
func Set(m *dns.Msg, udpSize uint16, opts ...Option) {
	opt := m.IsEdns0()
	if opt == nil {
		m.SetEdns0(udpSize, false)
		opt = m.IsEdns0()
	}
	kept := opt.Option[:0]
	for _, e := range opt.Option {
		if e.Option() != Code {
			kept = append(kept, e)
		}
	}
	opt.Option = kept
	for _, o := range opts {
		opt.Option = append(opt.Option, o.EDNS0())
	}
}
