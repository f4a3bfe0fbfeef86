package portmap

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNAT is a NAT-PMP gateway on port 5351, the only port go-nat-pmp
// talks to, of a 127.x.y.z address of its own (nextLoopback). It follows
// RFC 6886's server rules (§3.3, §3.6): idempotent mappings by
// internal port, the suggested external port when free, lifetimes capped,
// deletions, result 5 for unknown opcodes, result 1 for other versions,
// requests with opcode ≥ 128 ignored. It builds its datagrams with its
// own code, and counts and logs everything it receives. Tests switch its
// behaviour under mu.
type fakeNAT struct {
	t         *testing.T
	conn      *net.UDPConn
	addr      netip.AddrPort
	strayConn *net.UDPConn // another address, for datagrams from the wrong source
	wg        sync.WaitGroup

	mu sync.Mutex // guards following
	// external is the address reported by op 0 and in announcements.
	external netip.Addr
	// The epoch is epochBase plus the whole seconds since epochAt.
	epochBase uint32
	epochAt   time.Time
	mappings  map[uint16]fakeMapping // by internal port (NAT-PMP and PCP alike, as in miniupnpd)
	taken     map[uint16]bool        // external ports in use by someone else
	nextPort  uint16                 // where port allocation starts
	// maxLifetime caps granted lifetimes (0: no cap).
	maxLifetime uint32
	// addrResult and mapResult, when not 0, answer op 0 and op 1/2 with
	// that result code.
	addrResult, mapResult uint16
	silent                bool // receive and count, answer nothing
	silentMap             bool // answer no mapping request (deletions are answered)
	// junk, when not "", names the datagram of junkFor to send before
	// every answer to a request with opcode junkOp.
	junk   string
	junkOp byte
	// stray says to send, before every answer, a well-formed answer with
	// a wrong address and port from another address.
	stray bool

	// PCP (see fake_pcp_test.go). pcp says to speak it (version 2), as
	// miniupnpd does; otherwise a PCP request gets NAT-PMP's Unsupported
	// Version, as a NAT-PMP-only gateway answers (RFC 6886 §1.1).
	pcp bool
	// pcpResult, when not 0, answers MAP requests with that result.
	pcpResult uint8
	// pcpSilent counts down: that many PCP requests go unanswered.
	pcpSilent int
	// pcpJunk, when not "", names the datagram (pcpJunkFor) to send
	// before every PCP answer.
	pcpJunk string
	pcpLog  []fakePCPReq // MAP requests, in order

	// Counts of what arrived.
	addrReqs, mapReqs, deletes, others int
	mapLog                             []fakeMapReq // mapping requests, deletions included, in order
	recv                               []fakeRecv   // every datagram, in order
}

type fakeRecv struct {
	from netip.AddrPort
	at   time.Time
	op   byte // 255 if too short to have one
}

type fakeMapping struct {
	external uint16
	lifetime uint32
	nonce    [12]byte // PCP's; zero for a NAT-PMP mapping
}

type fakeMapReq struct {
	op                  byte
	internal, suggested uint16
	lifetime            uint32
}

// loopbackNext numbers the addresses nextLoopback hands out. It starts
// at a random place so that test processes running at the same time
// (other packages, other checkouts) are unlikely to meet.
var loopbackNext atomic.Uint32

func init() { loopbackNext.Store(rand.Uint32N(loopbackCount)) }

// loopbackCount is how many addresses nextLoopback cycles through:
// 127.1.0.0 to 127.254.255.255, leaving out 127.0/16 (127.0.0.1, and the
// 127.0.1.1 of /etc/hosts) and 127.255.255.255.
const loopbackCount = 254 << 16

// nextLoopback returns an address in 127/8, a different one at each call,
// so that every test's gateway has port 5351 of an address of its own.
// Linux routes all of 127/8 to lo; binding needs no privilege (5351 is
// above 1023).
func nextLoopback() netip.Addr {
	n := loopbackNext.Add(1) % loopbackCount
	return netip.AddrFrom4([4]byte{127, byte(1 + n>>16), byte(n >> 8), byte(n)})
}

// newFakeNAT starts a fake gateway on port 5351 of the next free
// nextLoopback address.
func newFakeNAT(t *testing.T) *fakeNAT {
	t.Helper()
	var conn *net.UDPConn
	var err error
	for range 20 { // another process may hold one
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(nextLoopback(), DefaultServerPort)))
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	stray, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(nextLoopback(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNAT{
		t:         t,
		conn:      conn,
		addr:      conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		strayConn: stray,
		external:  netip.MustParseAddr("198.51.100.7"),
		epochBase: 1000,
		epochAt:   time.Now(),
		mappings:  map[uint16]fakeMapping{},
		taken:     map[uint16]bool{},
		nextPort:  40000,
	}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(func() {
		conn.Close()
		stray.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeNAT) epochLocked() uint32 {
	return f.epochBase + uint32(time.Since(f.epochAt)/time.Second)
}

func (f *fakeNAT) serve() {
	defer f.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		req := append([]byte(nil), buf[:n]...)
		f.mu.Lock()
		r := fakeRecv{from: from, at: time.Now(), op: 255}
		if n >= 2 {
			r.op = req[1]
		}
		f.recv = append(f.recv, r)
		var reply, junk []byte
		if len(req) > 0 && req[0] == pcpVersion && f.pcp {
			reply, junk = f.handlePCPLocked(req, from)
		} else {
			reply, junk = f.handleLocked(req)
		}
		stray := f.stray
		f.mu.Unlock()
		if reply == nil {
			if junk != nil {
				f.conn.WriteToUDPAddrPort(junk, from)
			}
			continue
		}
		if stray {
			// A perfect answer, but from the wrong address.
			f.strayConn.WriteToUDPAddrPort(f.strayAnswer(req), from)
		}
		if junk != nil {
			f.conn.WriteToUDPAddrPort(junk, from)
		}
		f.conn.WriteToUDPAddrPort(reply, from)
	}
}

// handleLocked counts req and returns the answer (nil for none) and, in
// junk mode, the datagram to send before it.
func (f *fakeNAT) handleLocked(req []byte) (reply []byte, junk []byte) {
	if len(req) < 2 {
		f.others++
		return nil, nil
	}
	op := req[1]
	epoch := f.epochLocked()
	if req[0] != 0 {
		f.others++
		if f.silent {
			return nil, nil
		}
		return f.header(128+op, 1, epoch), nil // unsupported version, miniupnpd's form
	}
	switch {
	case op == 0:
		f.addrReqs++
		if f.silent {
			return nil, nil
		}
		reply = append(f.header(128, f.addrResult, epoch), 0, 0, 0, 0)
		if f.addrResult == 0 {
			a := f.external.As4()
			copy(reply[8:], a[:])
		}
	case op == 1 || op == 2:
		if len(req) < 12 {
			f.others++
			return nil, nil
		}
		r := fakeMapReq{
			op:        op,
			internal:  binary.BigEndian.Uint16(req[4:6]),
			suggested: binary.BigEndian.Uint16(req[6:8]),
			lifetime:  binary.BigEndian.Uint32(req[8:12]),
		}
		f.mapLog = append(f.mapLog, r)
		if r.lifetime == 0 {
			f.deletes++
		} else {
			f.mapReqs++
		}
		if f.silent || (f.silentMap && r.lifetime != 0) {
			return nil, nil
		}
		reply = f.header(128+op, f.mapResult, epoch)
		reply = binary.BigEndian.AppendUint16(reply, r.internal)
		if f.mapResult != 0 {
			reply = append(reply, 0, 0, 0, 0, 0, 0)
			break
		}
		if r.lifetime == 0 {
			if r.internal == 0 {
				clear(f.mappings)
			} else {
				delete(f.mappings, r.internal)
			}
			reply = append(reply, 0, 0, 0, 0, 0, 0)
			break
		}
		m, ok := f.mappings[r.internal]
		if !ok {
			m.external = r.suggested
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
		reply = binary.BigEndian.AppendUint16(reply, m.external)
		reply = binary.BigEndian.AppendUint32(reply, m.lifetime)
	case op >= 128:
		f.others++
		return nil, nil
	default:
		f.others++
		if f.silent {
			return nil, nil
		}
		reply = append([]byte(nil), req...)
		reply[1] |= 0x80
		if len(reply) >= 4 {
			binary.BigEndian.PutUint16(reply[2:4], 5)
		}
		return reply, nil
	}
	if f.junk != "" && op == f.junkOp {
		junk = f.junkFor(req, epoch)[f.junk]
		if junk == nil {
			f.t.Errorf("fake NAT: no junk %q for opcode %d", f.junk, op)
		}
	}
	return reply, junk
}

func (f *fakeNAT) inUseLocked(port uint16) bool {
	if f.taken[port] {
		return true
	}
	for _, m := range f.mappings {
		if m.external == port {
			return true
		}
	}
	return false
}

func (f *fakeNAT) header(op byte, result uint16, epoch uint32) []byte {
	b := []byte{0, op}
	b = binary.BigEndian.AppendUint16(b, result)
	return binary.BigEndian.AppendUint32(b, epoch)
}

// junkFor returns, by name, datagrams that are no answer to req (a
// request with opcode 0 or 1): too short, the wrong version, the wrong
// opcode, a request instead of a response, a mapping for another
// internal port, a PCP response, an empty one. Its keys are junkNames(0)
// or junkNames(1). (Trailing bytes are not junk: go-nat-pmp reads 16
// bytes and ignores the rest of a mapping response.)
func (f *fakeNAT) junkFor(req []byte, epoch uint32) map[string][]byte {
	bogus := netip.MustParseAddr("6.6.6.6").As4()
	wrongVersion := append(f.header(128+req[1], 0, epoch), bogus[:]...)
	wrongVersion[0] = 1
	extReply := append(f.header(128, 0, epoch), bogus[:]...)
	mapReply := f.header(129, 0, epoch)
	mapReply = binary.BigEndian.AppendUint16(mapReply, 4501) // someone else's internal port
	mapReply = binary.BigEndian.AppendUint16(mapReply, 6666)
	mapReply = binary.BigEndian.AppendUint32(mapReply, 60)
	j := map[string][]byte{
		"empty":        {},
		"1 byte":       {0},
		"3 bytes":      {0, 128 + req[1], 0},
		"version 1":    wrongVersion,
		"request echo": append([]byte(nil), req...),
		"PCP response": {2, 0x80 | 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"header only":  f.header(128+req[1], 0, epoch), // success, but only the header
	}
	if req[1] == 0 {
		j["wrong opcode"] = mapReply
		j["one byte short"] = extReply[:11]
	} else {
		j["wrong opcode"] = extReply
		j["other internal port"] = mapReply
		j["one byte short"] = mapReply[:15:15]
		tcp := append(f.header(128+2, 0, epoch), req[4:6]...) // the right port
		j["TCP for UDP"] = append(tcp, mapReply[10:]...)
	}
	return j
}

// junkNames returns the names of junkFor's datagrams for opcode op.
func junkNames(op byte) []string {
	f := &fakeNAT{}
	req := []byte{0, op, 0, 0, 0x11, 0x94, 0x11, 0x94, 0, 0, 0x0e, 0x10}
	if op == 0 {
		req = req[:2]
	}
	var names []string
	for name := range f.junkFor(req, 1) {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// strayAnswer is a well-formed answer to req with a wrong address and
// port, for sending from the stray socket.
func (f *fakeNAT) strayAnswer(req []byte) []byte {
	b := f.header(128+req[1], 0, 1)
	if req[1] == 0 {
		return append(b, 6, 6, 6, 6)
	}
	b = append(b, req[4:6]...)
	b = binary.BigEndian.AppendUint16(b, 6666)
	return binary.BigEndian.AppendUint32(b, 60)
}

// reboot makes the gateway lose its state: epoch back to 0, mappings gone.
func (f *fakeNAT) reboot() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.epochBase, f.epochAt = 0, time.Now()
	clear(f.mappings)
}

func (f *fakeNAT) setEpoch(e uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.epochBase, f.epochAt = e, time.Now()
}

func (f *fakeNAT) set(fn func(f *fakeNAT)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

type fakeCounts struct{ addr, mapping, deletes, others int }

func (f *fakeNAT) counts() fakeCounts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fakeCounts{f.addrReqs, f.mapReqs, f.deletes, f.others}
}

func (f *fakeNAT) log() []fakeMapReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeMapReq(nil), f.mapLog...)
}

func (f *fakeNAT) received() []fakeRecv {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRecv(nil), f.recv...)
}

func (f *fakeNAT) mapping(internal uint16) (fakeMapping, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.mappings[internal]
	return m, ok
}

// pmpAnnouncement is the NAT-PMP announcement of the current address and
// epoch (RFC 6886 §3.2.1).
func (f *fakeNAT) pmpAnnouncement() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.external.As4()
	return append(f.header(128, 0, f.epochLocked()), a[:]...)
}

// pcpAnnouncement is the 24-byte PCP ANNOUNCE that miniupnpd sends after
// a restart.
func (f *fakeNAT) pcpAnnouncement() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := make([]byte, 24)
	b[0], b[1] = 2, 0x80
	binary.BigEndian.PutUint32(b[8:12], f.epochLocked())
	return b
}

// send sends b to to from the gateway's address.
func (f *fakeNAT) send(b []byte, to netip.AddrPort) {
	if _, err := f.conn.WriteToUDPAddrPort(b, to); err != nil {
		f.t.Errorf("fake NAT: send: %v", err)
	}
}

// sendStray sends b to to from another address.
func (f *fakeNAT) sendStray(b []byte, to netip.AddrPort) {
	if _, err := f.strayConn.WriteToUDPAddrPort(b, to); err != nil {
		f.t.Errorf("fake NAT: send: %v", err)
	}
}
