package portmap

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// fakePCPReq is a PCP MAP request the fake received.
type fakePCPReq struct {
	nonce     [12]byte
	internal  uint16
	suggested uint16
	lifetime  uint32
	client    netip.Addr
}

// handlePCPLocked answers a PCP request as a PCP server does (RFC 6887
// §8.2, §11.3): requests shorter than the header or with R set are
// dropped; over 1100 octets or not a multiple of 4, MALFORMED_REQUEST;
// a client address other than the source, ADDRESS_MISMATCH; an opcode
// other than MAP, UNSUPP_OPCODE; a MAP for a protocol other than UDP,
// UNSUPP_PROTOCOL; a MAP for an internal port mapped under another
// nonce, NOT_AUTHORIZED. A MAP of lifetime 0 deletes. Mappings are
// shared with NAT-PMP, and a renewal keeps the port; a new mapping gets
// the suggested port when free.
func (f *fakeNAT) handlePCPLocked(req []byte, from netip.AddrPort) (reply, junk []byte) {
	if len(req) < pcpHeaderLen || req[1]&0x80 != 0 {
		f.others++
		return nil, nil
	}
	epoch := f.epochLocked()
	answer := func(result uint8, lifetime uint32) []byte {
		n := min(len(req), pcpMaxLen)
		n -= n % 4
		b := append([]byte(nil), req[:max(n, pcpHeaderLen)]...)
		b[1] |= 0x80
		b[2], b[3] = 0, result
		binary.BigEndian.PutUint32(b[4:8], lifetime)
		binary.BigEndian.PutUint32(b[8:12], epoch)
		clear(b[12:24])
		return b
	}
	client := netip.AddrFrom16([16]byte(req[8:24])).Unmap()
	op := req[1] & 0x7f
	switch {
	case len(req) > pcpMaxLen || len(req)%4 != 0:
		f.others++
		return answer(uint8(PCPMalformedRequest), 0), nil
	case client != from.Addr().Unmap():
		f.others++
		return answer(uint8(PCPAddressMismatch), 0), nil
	case op != pcpOpMap:
		f.others++
		return answer(uint8(PCPUnsuppOpcode), 0), nil
	case len(req) < pcpMapLen:
		f.others++
		return answer(uint8(PCPMalformedRequest), 0), nil
	}
	p := req[pcpHeaderLen:]
	r := fakePCPReq{
		nonce:     [12]byte(p[:12]),
		internal:  binary.BigEndian.Uint16(p[16:18]),
		suggested: binary.BigEndian.Uint16(p[18:20]),
		lifetime:  binary.BigEndian.Uint32(req[4:8]),
		client:    client,
	}
	f.pcpLog = append(f.pcpLog, r)
	if f.pcpJunk != "" {
		junk = f.pcpJunkFor(req, epoch)[f.pcpJunk]
		if junk == nil {
			f.t.Errorf("fake NAT: no PCP junk %q", f.pcpJunk)
		}
	}
	if f.silent || f.pcpSilent > 0 {
		f.pcpSilent--
		return nil, junk // the junk goes all the same
	}
	if p[12] != protoUDP {
		return answer(uint8(PCPUnsuppProtocol), 0), junk
	}
	if f.pcpResult != 0 {
		return answer(f.pcpResult, 30), junk
	}
	m, ok := f.mappings[r.internal]
	if ok && m.nonce != r.nonce {
		return answer(uint8(PCPNotAuthorized), 30), junk
	}
	reply = answer(uint8(PCPSuccess), r.lifetime)
	if r.lifetime == 0 {
		delete(f.mappings, r.internal)
		return reply, junk
	}
	if !ok {
		m.external, m.nonce = r.suggested, r.nonce
		if m.external == 0 || f.inUseLocked(m.external) {
			for m.external = f.nextPort; f.inUseLocked(m.external); m.external++ {
			}
		}
	}
	m.lifetime = r.lifetime
	if f.maxLifetime != 0 && m.lifetime > f.maxLifetime {
		m.lifetime = f.maxLifetime
	}
	f.mappings[r.internal] = m
	binary.BigEndian.PutUint32(reply[4:8], m.lifetime)
	rp := reply[pcpHeaderLen:]
	binary.BigEndian.PutUint16(rp[18:20], m.external)
	putPCPAddr(rp[20:36], f.external)
	return reply, junk
}

// pcpJunkFor returns, by name, datagrams that are no answer to the MAP
// request req: responses for another nonce, internal port, protocol or
// opcode, a request echoed, cut or padded wrongly, another version.
func (f *fakeNAT) pcpJunkFor(req []byte, epoch uint32) map[string][]byte {
	good := append([]byte(nil), req...)
	good[1] |= 0x80
	binary.BigEndian.PutUint32(good[8:12], epoch)
	gp := good[pcpHeaderLen:]
	binary.BigEndian.PutUint16(gp[18:20], 6666)
	putPCPAddr(gp[20:36], netip.MustParseAddr("6.6.6.6"))
	mod := func(fn func(b []byte)) []byte {
		b := slices.Clone(good)
		fn(b)
		return b
	}
	return map[string][]byte{
		"other nonce":   mod(func(b []byte) { b[pcpHeaderLen] ^= 0xff }),
		"other port":    mod(func(b []byte) { b[pcpHeaderLen+17]++ }),
		"other proto":   mod(func(b []byte) { b[pcpHeaderLen+12] = 6 }),
		"announce":      mod(func(b []byte) { b[1] = 0x80 }),
		"request echo":  slices.Clone(req),
		"short":         good[:pcpMapLen-4],
		"not 4-aligned": append(slices.Clone(good), 0),
		"version 3":     mod(func(b []byte) { b[0] = 3 }),
		"empty":         {},
	}
}

// pcpJunkNames returns the names of pcpJunkFor's datagrams.
func pcpJunkNames() []string {
	f := &fakeNAT{}
	var names []string
	for name := range f.pcpJunkFor(make([]byte, pcpMapLen), 1) {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func (f *fakeNAT) pcpRequests() []fakePCPReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pcpLog)
}
