// Package dso reads and writes DNS Stateful Operations messages (RFC
// 8490) and the TLVs of DNS Push Notifications (RFC 8765), byte for byte,
// for the server (the dns-push plugin) and its clients.
//
// A DSO message is a DNS header with OPCODE 6 and all four counts zero,
// followed by TLVs, each a type (u16), a length (u16) and that many octets
// of data:
//
//	ID | QR OPCODE=6 ... RCODE | 0 | 0 | 0 | 0 | TLV (primary) | TLV...
//
// The first TLV is the primary one and says what the message is; the
// others are additional. A message with ID 0 is unidirectional and never
// answered; any other ID is a request that gets exactly one response.
// Names inside TLVs are never compressed.
package dso

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/miekg/dns"
)

// Opcode is the DNS OPCODE of DSO messages (RFC 8490 §10.2).
const Opcode = 6

// RcodeDSOTypeNI says a DSO-TYPE is not implemented (RFC 8490 §10.3).
const RcodeDSOTypeNI = 11

// TLV types (RFC 8490 §10.4, RFC 8765 §10.2).
const (
	TypeKeepalive   uint16 = 0x0001
	TypeRetryDelay  uint16 = 0x0002
	TypePadding     uint16 = 0x0003
	TypeSubscribe   uint16 = 0x0040
	TypePush        uint16 = 0x0041
	TypeUnsubscribe uint16 = 0x0042
	TypeReconfirm   uint16 = 0x0043
)

// TTLs with a meaning of their own in a PUSH change record (RFC 8765
// §6.3.1).
const (
	TTLRemove           uint32 = 0xFFFFFFFF // remove this exact record
	TTLCollectiveRemove uint32 = 0xFFFFFFFE // remove an RRset, or all at a name
)

const headerLen = 12

// TLV is one type-length-value.
type TLV struct {
	Type uint16
	Data []byte
}

// Message is one DSO message.
type Message struct {
	ID       uint16
	Response bool
	Rcode    int // the header's four bits
	TLVs     []TLV
}

// Unidirectional reports whether m expects no response (ID 0).
func (m *Message) Unidirectional() bool { return m.ID == 0 }

// Primary returns m's primary TLV; ok is false for a message with none,
// which only a response may be.
func (m *Message) Primary() (TLV, bool) {
	if len(m.TLVs) == 0 {
		return TLV{}, false
	}
	return m.TLVs[0], true
}

// Errors of Parse.
var (
	ErrNotDSO    = errors.New("dso: not a DSO message")
	ErrMalformed = errors.New("dso: malformed message")
)

// IsDSO reports whether b is a DNS message with OPCODE DSO, without
// parsing it further.
func IsDSO(b []byte) bool { return len(b) >= headerLen && (b[2]>>3)&0xF == Opcode }

// Parse reads a DSO message. It refuses a message whose counts are not
// all zero, a request without a primary TLV, and a TLV that runs past the
// end (RFC 8490 §5.4).
func Parse(b []byte) (*Message, error) {
	if !IsDSO(b) {
		return nil, ErrNotDSO
	}
	for i := 4; i < headerLen; i += 2 {
		if binary.BigEndian.Uint16(b[i:]) != 0 {
			return nil, fmt.Errorf("%w: a section count is not zero", ErrMalformed)
		}
	}
	m := &Message{
		ID:       binary.BigEndian.Uint16(b),
		Response: b[2]&0x80 != 0,
		Rcode:    int(b[3] & 0xF),
	}
	for rest := b[headerLen:]; len(rest) > 0; {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: a TLV header is cut short", ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(rest[2:]))
		if len(rest) < 4+n {
			return nil, fmt.Errorf("%w: a TLV runs past the message", ErrMalformed)
		}
		m.TLVs = append(m.TLVs, TLV{Type: binary.BigEndian.Uint16(rest), Data: rest[4 : 4+n]})
		rest = rest[4+n:]
	}
	if !m.Response && len(m.TLVs) == 0 {
		return nil, fmt.Errorf("%w: no primary TLV", ErrMalformed)
	}
	return m, nil
}

// Pack writes m.
func (m *Message) Pack() ([]byte, error) {
	b := make([]byte, headerLen, headerLen+64)
	binary.BigEndian.PutUint16(b, m.ID)
	b[2] = Opcode << 3
	if m.Response {
		b[2] |= 0x80
	}
	b[3] = byte(m.Rcode & 0xF)
	for _, t := range m.TLVs {
		if len(t.Data) > 0xFFFF {
			return nil, fmt.Errorf("dso: TLV %d of %d octets", t.Type, len(t.Data))
		}
		b = binary.BigEndian.AppendUint16(b, t.Type)
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.Data)))
		b = append(b, t.Data...)
	}
	if len(b) > 0xFFFF {
		return nil, fmt.Errorf("dso: message of %d octets", len(b))
	}
	return b, nil
}

// Keepalive is the Keepalive TLV's data (RFC 8490 §7.1), in milliseconds.
type Keepalive struct {
	Inactivity uint32 // the inactivity timeout; 0xFFFFFFFF for none
	Interval   uint32 // the keepalive interval; 0xFFFFFFFF for none
}

// TLV returns k as a TLV.
func (k Keepalive) TLV() TLV {
	d := binary.BigEndian.AppendUint32(nil, k.Inactivity)
	return TLV{Type: TypeKeepalive, Data: binary.BigEndian.AppendUint32(d, k.Interval)}
}

// ParseKeepalive reads a Keepalive TLV's data: exactly 8 octets.
func ParseKeepalive(d []byte) (Keepalive, error) {
	if len(d) != 8 {
		return Keepalive{}, fmt.Errorf("%w: Keepalive of %d octets", ErrMalformed, len(d))
	}
	return Keepalive{Inactivity: binary.BigEndian.Uint32(d), Interval: binary.BigEndian.Uint32(d[4:])}, nil
}

// RetryDelay returns a Retry Delay TLV of ms milliseconds (RFC 8490 §7.2).
func RetryDelay(ms uint32) TLV {
	return TLV{Type: TypeRetryDelay, Data: binary.BigEndian.AppendUint32(nil, ms)}
}

// ParseRetryDelay reads a Retry Delay TLV's data: exactly 4 octets.
func ParseRetryDelay(d []byte) (uint32, error) {
	if len(d) != 4 {
		return 0, fmt.Errorf("%w: Retry Delay of %d octets", ErrMalformed, len(d))
	}
	return binary.BigEndian.Uint32(d), nil
}

// Question is what a SUBSCRIBE asks for (RFC 8765 §6.2.1): a name, type
// and class, the type or class possibly ANY.
type Question struct {
	Name  string // fully qualified, as sent
	Type  uint16
	Class uint16
}

// Subscribe returns a SUBSCRIBE TLV for q.
func Subscribe(q Question) (TLV, error) {
	b, err := appendName(nil, q.Name)
	if err != nil {
		return TLV{}, err
	}
	b = binary.BigEndian.AppendUint16(b, q.Type)
	return TLV{Type: TypeSubscribe, Data: binary.BigEndian.AppendUint16(b, q.Class)}, nil
}

// ParseSubscribe reads a SUBSCRIBE TLV's data: an uncompressed name, a
// type and a class, and nothing after them.
func ParseSubscribe(d []byte) (Question, error) {
	name, off, err := readName(d)
	if err != nil {
		return Question{}, err
	}
	if len(d)-off != 4 {
		return Question{}, fmt.Errorf("%w: SUBSCRIBE has %d octets after its name, not 4", ErrMalformed, len(d)-off)
	}
	return Question{Name: name, Type: binary.BigEndian.Uint16(d[off:]), Class: binary.BigEndian.Uint16(d[off+2:])}, nil
}

// Unsubscribe returns an UNSUBSCRIBE TLV for the subscription made by the
// SUBSCRIBE with message ID id.
func Unsubscribe(id uint16) TLV {
	return TLV{Type: TypeUnsubscribe, Data: binary.BigEndian.AppendUint16(nil, id)}
}

// ParseUnsubscribe reads an UNSUBSCRIBE TLV's data: exactly 2 octets.
func ParseUnsubscribe(d []byte) (uint16, error) {
	if len(d) != 2 {
		return 0, fmt.Errorf("%w: UNSUBSCRIBE of %d octets", ErrMalformed, len(d))
	}
	return binary.BigEndian.Uint16(d), nil
}

// Change is one change record of a PUSH (RFC 8765 §6.3.1): a record to
// add (its TTL), to remove (TTLRemove), or a collective removal
// (TTLCollectiveRemove, no data).
type Change struct {
	Name  string
	Type  uint16
	Class uint16
	TTL   uint32
	Data  []byte // the record's RDATA, uncompressed
}

// AddChange returns the change that adds rr, RemoveChange the one that
// removes it.
func AddChange(rr dns.RR) (Change, error) { return change(rr, rr.Header().Ttl) }

// RemoveChange returns the change that removes exactly rr.
func RemoveChange(rr dns.RR) (Change, error) { return change(rr, TTLRemove) }

func change(rr dns.RR, ttl uint32) (Change, error) {
	buf := make([]byte, dns.Len(rr)+64)
	off, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		return Change{}, err
	}
	h := rr.Header()
	owner, err := appendName(nil, h.Name)
	if err != nil {
		return Change{}, err
	}
	// The RDATA is what follows the owner, type, class, TTL and RDLENGTH.
	start := len(owner) + 10
	if off < start || int(binary.BigEndian.Uint16(buf[start-2:])) != off-start {
		return Change{}, fmt.Errorf("dso: packing %s", h.Name)
	}
	return Change{Name: h.Name, Type: h.Rrtype, Class: h.Class, TTL: ttl, Data: buf[start:off:off]}, nil
}

// Push returns a PUSH TLV of changes, which must not be empty.
func Push(changes []Change) (TLV, error) {
	if len(changes) == 0 {
		return TLV{}, errors.New("dso: a PUSH with no change")
	}
	var b []byte
	for _, c := range changes {
		var err error
		if b, err = appendName(b, c.Name); err != nil {
			return TLV{}, err
		}
		b = binary.BigEndian.AppendUint16(b, c.Type)
		b = binary.BigEndian.AppendUint16(b, c.Class)
		b = binary.BigEndian.AppendUint32(b, c.TTL)
		if len(c.Data) > 0xFFFF {
			return TLV{}, errors.New("dso: RDATA too long")
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.Data)))
		b = append(b, c.Data...)
	}
	return TLV{Type: TypePush, Data: b}, nil
}

// ParsePush reads a PUSH TLV's data: one or more change records, each
// whole, with uncompressed names.
func ParsePush(d []byte) ([]Change, error) {
	var out []Change
	for len(d) > 0 {
		name, off, err := readName(d)
		if err != nil {
			return nil, err
		}
		if len(d)-off < 10 {
			return nil, fmt.Errorf("%w: a change record is cut short", ErrMalformed)
		}
		c := Change{Name: name, Type: binary.BigEndian.Uint16(d[off:]), Class: binary.BigEndian.Uint16(d[off+2:]), TTL: binary.BigEndian.Uint32(d[off+4:])}
		n := int(binary.BigEndian.Uint16(d[off+8:]))
		off += 10
		if len(d)-off < n {
			return nil, fmt.Errorf("%w: RDATA runs past the PUSH", ErrMalformed)
		}
		c.Data = d[off : off+n]
		out = append(out, c)
		d = d[off+n:]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: a PUSH with no change", ErrMalformed)
	}
	return out, nil
}

// RR returns the record that an add or remove change carries.
func (c Change) RR() (dns.RR, error) {
	b, err := appendName(nil, c.Name)
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint16(b, c.Type)
	b = binary.BigEndian.AppendUint16(b, c.Class)
	b = binary.BigEndian.AppendUint32(b, c.TTL)
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.Data)))
	b = append(b, c.Data...)
	rr, _, err := dns.UnpackRR(b, 0)
	return rr, err
}

func appendName(b []byte, name string) ([]byte, error) {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		return nil, err
	}
	return append(b, buf[:n]...), nil
}

// readName reads an uncompressed name at the start of d and returns it
// and the offset after it; a compression pointer is malformed.
func readName(d []byte) (string, int, error) {
	for off := 0; off < len(d); {
		l := int(d[off])
		switch {
		case l == 0:
			name, _, err := dns.UnpackDomainName(d[:off+1], 0)
			if err != nil {
				return "", 0, fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			return name, off + 1, nil
		case l&0xC0 != 0:
			return "", 0, fmt.Errorf("%w: a compressed or extended label in a TLV", ErrMalformed)
		}
		off += 1 + l
	}
	return "", 0, fmt.Errorf("%w: a name runs past its TLV", ErrMalformed)
}
