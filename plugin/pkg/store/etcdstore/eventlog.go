package etcdstore

import (
	"encoding/binary"
	"errors"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// errBadLog marks an event log value that encodeEvents cannot have made.
var errBadLog = errors.New("etcdstore: malformed event log value")

// encodeEvents lays out the events of one commit for the other instances,
// which learn of the commit through their watch and publish the same
// events, in the same order, to their subscribers:
//
//	count u16 ‖ (serial u32 ‖ expired u8 ‖ changes u16 ‖
//	  (namelen u8 ‖ name ‖ added u16 ‖ (len u16 ‖ rr)… ‖ removed u16 ‖ (len u16 ‖ rr)…)…)…
//
// Records are in uncompressed wire form, owner names included.
func encodeEvents(evs []store.Event) ([]byte, error) {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(evs)))
	for _, ev := range evs {
		b = binary.BigEndian.AppendUint32(b, ev.Serial)
		b = append(b, boolByte(ev.Expired))
		b = binary.BigEndian.AppendUint16(b, uint16(len(ev.Changes)))
		for _, c := range ev.Changes {
			if len(c.Name) > 255 {
				return nil, errBadLog
			}
			b = append(b, byte(len(c.Name)))
			b = append(b, c.Name...)
			var err error
			if b, err = appendRRs(b, c.Added); err != nil {
				return nil, err
			}
			if b, err = appendRRs(b, c.Removed); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func appendRRs(b []byte, rrs []dns.RR) ([]byte, error) {
	b = binary.BigEndian.AppendUint16(b, uint16(len(rrs)))
	for _, rr := range rrs {
		at := len(b)
		b = append(b, 0, 0)
		b = append(b, make([]byte, dns.Len(rr))...)
		end, err := dns.PackRR(rr, b, at+2, nil, false)
		if err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint16(b[at:], uint16(end-at-2))
		b = b[:end]
	}
	return b, nil
}

// decodeEvents reads what encodeEvents wrote; errBadLog for anything else.
func decodeEvents(b []byte) ([]store.Event, error) {
	r := reader{b: b}
	n := r.u16()
	var evs []store.Event
	for range n {
		ev := store.Event{Serial: r.u32(), Expired: r.u8() == 1}
		changes := r.u16()
		for range changes {
			c := store.Change{Name: string(r.bytes(int(r.u8())))}
			c.Added = r.rrs()
			c.Removed = r.rrs()
			if r.bad {
				return nil, errBadLog
			}
			ev.Changes = append(ev.Changes, c)
		}
		if r.bad {
			return nil, errBadLog
		}
		evs = append(evs, ev)
	}
	if r.bad || len(r.b) != 0 {
		return nil, errBadLog
	}
	return evs, nil
}

// reader takes fields off the front of b; bad is set, and zeros come out,
// once anything is missing or malformed.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) bytes(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if v := r.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.bytes(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.bytes(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) rrs() []dns.RR {
	n := r.u16()
	var rrs []dns.RR
	for range n {
		wire := r.bytes(int(r.u16()))
		if r.bad {
			return nil
		}
		rr, off, err := dns.UnpackRR(wire, 0)
		if err != nil || rr == nil || off != len(wire) {
			r.bad = true
			return nil
		}
		rrs = append(rrs, rr)
	}
	return rrs
}
