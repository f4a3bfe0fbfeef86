package llq

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

// fakeServer is an LLQ server on 127.0.0.1 that follows RFC 8764 (UDP:
// four-way setup; TCP and TLS: two messages, port hint in LLQ-ERROR),
// answers duplicate requests with its earlier reply, and can be told to
// misbehave. It sends events only when a test says so (push).
type fakeServer struct {
	t       *testing.T
	network string // "udp", "tcp" or "tcp-tls"
	addr    string
	udp     *net.UDPConn
	ln      net.Listener
	wg      sync.WaitGroup

	mu sync.Mutex // guards following
	// key verifies requests and acks, and signs replies and events with
	// signSecret (key.Secret unless a test changes it).
	key        *keyfile.Key
	signSecret string
	records    []dns.RR
	llqs       map[uint64]*fakeLLQ
	replies    map[string][]byte // by peer and message ID: for duplicates
	maxLease   uint32            // granted leases are at most this
	full       uint32            // nonzero: SERV-FULL, retry after this
	refuse     bool              // REFUSED
	silent     bool              // answer nothing
	dropSetups int               // drop this many setup requests first
	spoof      bool              // precede each challenge by two forged ones
	dupChall   bool              // resend the challenge before the ACK
	notAuth    uint16            // answer NOTAUTH with this TSIG error
	requests   []*dns.Msg        // every request that verified
	acks       []*dns.Msg        // every ack that verified
	badTSIG    int               // messages whose TSIG failed
	conns      []net.Conn
}

type fakeLLQ struct {
	id          uint64
	q           dns.Question
	lease       uint32
	setupID     uint16 // the setup request's message ID
	established bool
	peer        fakePeer
}

// fakePeer sends to one client: a UDP address or a TCP connection.
type fakePeer interface {
	send(b []byte)
	String() string
}

type udpPeer struct {
	conn *net.UDPConn
	addr netip.AddrPort
}

func (p udpPeer) send(b []byte)  { p.conn.WriteToUDPAddrPort(b, p.addr) }
func (p udpPeer) String() string { return p.addr.String() }

type streamPeer struct {
	conn net.Conn
	mu   *sync.Mutex
}

func (p streamPeer) send(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conn.Write(binary.BigEndian.AppendUint16(nil, uint16(len(b))))
	p.conn.Write(b)
}
func (p streamPeer) String() string { return p.conn.RemoteAddr().String() }

func newFakeServer(t *testing.T, network string, key *keyfile.Key) *fakeServer {
	t.Helper()
	s := &fakeServer{t: t, network: network, key: key, llqs: map[uint64]*fakeLLQ{}, replies: map[string][]byte{}, maxLease: 3600}
	if key != nil {
		s.signSecret = key.Secret
	}
	switch network {
	case "udp":
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		s.udp, s.addr = c, c.LocalAddr().String()
		s.wg.Go(s.serveUDP)
	case "tcp", "tcp-tls":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if network == "tcp-tls" {
			ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
		}
		s.ln, s.addr = ln, ln.Addr().String()
		s.wg.Go(s.serveTCP)
	}
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) close() {
	if s.udp != nil {
		s.udp.Close()
	}
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeServer) serveUDP() {
	buf := make([]byte, 65535)
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		s.handle(append([]byte(nil), buf[:n]...), udpPeer{s.udp, from})
	}
}

func (s *fakeServer) serveTCP() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		p := streamPeer{c, new(sync.Mutex)}
		s.wg.Go(func() {
			defer c.Close()
			for {
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				b := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				s.handle(b, p)
			}
		})
	}
}

// dropConns closes the TCP connections from the server's side.
func (s *fakeServer) dropConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

func (s *fakeServer) handle(raw []byte, p fakePeer) {
	m := new(dns.Msg)
	if m.Unpack(raw) != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var mac string
	if s.key != nil {
		t := m.IsTsig()
		if t == nil || dns.TsigVerifyWithProvider(raw, tsigauth.HMAC(s.key.Secret), "", false) != nil {
			s.badTSIG++
			if !m.Response && t != nil {
				r := new(dns.Msg).SetRcode(m, dns.RcodeNotAuth)
				r.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
				r.Extra[len(r.Extra)-1].(*dns.TSIG).Error = dns.RcodeBadSig
				b, _, err := dns.TsigGenerateWithProvider(r, tsigauth.HMAC(s.key.Secret), "", false)
				if err != nil {
					s.t.Error(err)
				}
				p.send(b)
			}
			return
		}
		mac = t.MAC
	}
	if m.Response {
		s.acks = append(s.acks, m)
		return
	}
	s.requests = append(s.requests, m)
	if s.notAuth != 0 && s.key != nil {
		// As tsigauth.Writer does: signed (with the request's MAC) only
		// for BADTIME.
		r := new(dns.Msg).SetRcode(m, dns.RcodeNotAuth)
		r.SetTsig(s.key.Name, s.key.Algorithm, 300, time.Now().Unix())
		r.Extra[len(r.Extra)-1].(*dns.TSIG).Error = s.notAuth
		b, _, err := dns.TsigGenerateWithProvider(r, tsigauth.HMAC(s.signSecret), mac, false)
		if err != nil {
			s.t.Error(err)
		}
		p.send(b)
		return
	}
	dupKey := fmt.Sprintf("%s/%d", p, m.Id)
	if b, ok := s.replies[dupKey]; ok {
		p.send(b)
		return
	}
	opts, _ := llqopt.From(m)
	if s.silent || len(opts) == 0 || len(m.Question) != 1 {
		return
	}
	o, q := opts[0], m.Question[0]
	reply := func(rcode int, answers []dns.RR, o llqopt.Option) {
		r := new(dns.Msg).SetRcode(m, rcode)
		r.Answer = answers
		llqopt.Set(r, 1232, o)
		b := s.packLocked(r, mac)
		s.replies[dupKey] = b
		p.send(b)
	}
	if s.refuse {
		reply(dns.RcodeRefused, nil, llqopt.Option{Opcode: o.Opcode})
		return
	}
	switch {
	case o.Opcode == llqopt.Setup && o.ID == 0:
		if s.full != 0 {
			reply(dns.RcodeSuccess, nil, llqopt.Option{Opcode: llqopt.Setup, Error: llqopt.ServFull, Lease: s.full})
			return
		}
		if s.dropSetups > 0 {
			s.dropSetups--
			return
		}
		l := &fakeLLQ{id: randomID64(), q: q, lease: min(o.Lease, s.maxLease), setupID: m.Id, peer: p}
		s.llqs[l.id] = l
		if s.network != "udp" {
			l.established = true
			reply(dns.RcodeSuccess, s.answersLocked(q), llqopt.Option{Opcode: llqopt.Setup, ID: l.id, Lease: l.lease})
			return
		}
		if s.spoof {
			// A forged challenge with the wrong message ID from the
			// server's address, and one with the right ID from elsewhere.
			f := new(dns.Msg).SetReply(m)
			f.Id = m.Id ^ 0x5a5a
			llqopt.Set(f, 1232, llqopt.Option{Opcode: llqopt.Setup, ID: 0xbad, Lease: l.lease})
			p.send(s.packLocked(f, mac))
			other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				s.t.Error(err)
				return
			}
			f.Id = m.Id
			llqopt.Set(f, 1232, llqopt.Option{Opcode: llqopt.Setup, ID: 0xbad2, Lease: l.lease})
			udpPeer{other, p.(udpPeer).addr}.send(s.packLocked(f, mac))
			other.Close()
		}
		reply(dns.RcodeSuccess, nil, llqopt.Option{Opcode: llqopt.Setup, ID: l.id, Lease: l.lease})
	case o.Opcode == llqopt.Setup:
		l := s.llqs[o.ID]
		if l == nil || l.lease != o.Lease || !strings.EqualFold(l.q.Name, q.Name) || l.q.Qtype != q.Qtype {
			reply(dns.RcodeSuccess, nil, llqopt.Option{Opcode: llqopt.Setup, Error: llqopt.NoSuchLLQ})
			return
		}
		if s.dupChall {
			// Pitfall 1: a late copy of the challenge, then the ACK.
			c := new(dns.Msg).SetReply(m)
			c.Id = l.setupID
			llqopt.Set(c, 1232, llqopt.Option{Opcode: llqopt.Setup, ID: l.id, Lease: l.lease})
			p.send(s.packLocked(c, mac))
		}
		l.established, l.peer = true, p
		reply(dns.RcodeSuccess, s.answersLocked(q), llqopt.Option{Opcode: llqopt.Setup, ID: l.id, Lease: l.lease})
	case o.Opcode == llqopt.Refresh:
		l := s.llqs[o.ID]
		if l == nil || !l.established {
			reply(dns.RcodeSuccess, nil, llqopt.Option{Opcode: llqopt.Refresh, Error: llqopt.NoSuchLLQ, ID: o.ID})
			return
		}
		if o.Lease == 0 {
			delete(s.llqs, o.ID)
		} else {
			l.lease = min(o.Lease, s.maxLease)
		}
		reply(dns.RcodeSuccess, nil, llqopt.Option{Opcode: llqopt.Refresh, ID: o.ID, Lease: min(o.Lease, s.maxLease)})
	default:
		reply(dns.RcodeSuccess, nil, llqopt.Option{Opcode: o.Opcode, Error: llqopt.FormatErr})
	}
}

// packLocked signs m with signSecret and requestMAC if the server has a key.
func (s *fakeServer) packLocked(m *dns.Msg, requestMAC string) []byte {
	if s.key == nil {
		b, err := m.Pack()
		if err != nil {
			s.t.Error(err)
		}
		return b
	}
	m.SetTsig(s.key.Name, s.key.Algorithm, 300, time.Now().Unix())
	b, _, err := dns.TsigGenerateWithProvider(m, tsigauth.HMAC(s.signSecret), requestMAC, false)
	if err != nil {
		s.t.Error(err)
	}
	return b
}

func (s *fakeServer) answersLocked(q dns.Question) []dns.RR {
	var out []dns.RR
	for _, rr := range s.records {
		if strings.EqualFold(rr.Header().Name, q.Name) && rr.Header().Rrtype == q.Qtype {
			out = append(out, dns.Copy(rr))
		}
	}
	return out
}

// push sends an event for LLQ id, copies times, and returns its message
// ID. Removed records go with TTL 0xFFFFFFFF.
func (s *fakeServer) push(id uint64, added, removed []dns.RR, copies int) uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.llqs[id]
	if l == nil || !l.established {
		s.t.Fatalf("push: no LLQ %#x", id)
	}
	return s.pushLocked(l.peer, l.q, id, added, removed, copies)
}

func (s *fakeServer) pushLocked(p fakePeer, q dns.Question, id uint64, added, removed []dns.RR, copies int) uint16 {
	m := new(dns.Msg)
	m.Id = dns.Id()
	m.Response = true
	m.Authoritative = true
	m.Question = []dns.Question{q}
	for _, rr := range added {
		m.Answer = append(m.Answer, dns.Copy(rr))
	}
	for _, rr := range removed {
		rr = dns.Copy(rr)
		rr.Header().Ttl = llqopt.RemoveTTL
		m.Answer = append(m.Answer, rr)
	}
	llqopt.Set(m, 1232, llqopt.Option{Opcode: llqopt.Event, ID: id})
	b := s.packLocked(m, "")
	for range copies {
		p.send(b)
	}
	return m.Id
}

// the accessors below copy under the lock.

func (s *fakeServer) set(f func(s *fakeServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *fakeServer) gotRequests() []*dns.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*dns.Msg(nil), s.requests...)
}

func (s *fakeServer) gotAcks() []*dns.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*dns.Msg(nil), s.acks...)
}

func (s *fakeServer) badTSIGs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.badTSIG
}

func (s *fakeServer) llq(id uint64) (fakeLLQ, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.llqs[id]
	if !ok {
		return fakeLLQ{}, false
	}
	return *l, true
}

func randomID64() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) | 1
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "llq.test"},
		DNSNames:     []string{"llq.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}
