package watch

import (
	"encoding/binary"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

var aliceKey = keyfile.Key{Name: "alice.members.example.com.", Algorithm: dns.HmacSHA256, Secret: "c2VjcmV0IG9mIHRoaXJ0eS10d28gb2N0ZXRzIGZvciBITUFD"}

// llqServer is alice's DNS server on 127.0.0.1, a miekg/dns server (TCP,
// and UDP on the same port for discovery) that checks every request's
// TSIG with its TsigSecret. It answers LLQs as RFC 8764 has them over TCP
// (setup and ACK+Answers in one exchange, refreshes, cancels) and plain
// queries from a zone; changes to the zone made with add and del are
// pushed as events, signed, to the LLQs they answer.
//
// The events go straight to the TCP connection (one Write per message,
// as the server's own replies), not through the handler's ResponseWriter,
// which would chain their TSIG to the last request's.
type llqServer struct {
	t    *testing.T
	addr string

	mu       sync.Mutex // guards following
	zone     []dns.RR
	refuse   bool                // answer LLQ setups REFUSED
	servfail bool                // answer plain queries SERVFAIL
	forge    bool                // answer plain queries without TSIG (a forger)
	nextID   uint64              //
	llqs     map[uint64]*fakeLLQ // live ones
	conns    map[string]net.Conn // by the client's address
	setups   []fakeLLQ           // every setup, in order
	queries  []dns.Question      // every plain (polling) query
	unsigned int                 // requests without a valid TSIG of alice's key
}

type fakeLLQ struct {
	id     uint64
	q      dns.Question
	client string // the connection's remote address
}

// recordingListener remembers the connections it accepts.
type recordingListener struct {
	net.Listener
	s *llqServer
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.mu.Lock()
		l.s.conns[c.RemoteAddr().String()] = c
		l.s.mu.Unlock()
	}
	return c, err
}

func newLLQServer(t *testing.T, records ...string) *llqServer {
	t.Helper()
	s := &llqServer{t: t, nextID: 0x1000, llqs: map[uint64]*fakeLLQ{}, conns: map[string]net.Conn{}}
	for _, r := range records {
		s.zone = append(s.zone, mustRR(t, r))
	}
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no port free for both UDP and TCP")
	}
	s.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{
		{PacketConn: pc},
		{Listener: recordingListener{ln, s}, IdleTimeout: func() time.Duration { return time.Hour }},
	} {
		srv.Handler = dns.HandlerFunc(s.serve)
		srv.TsigSecret = map[string]string{aliceKey.Name: aliceKey.Secret}
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	t.Cleanup(s.dropConns)
	return s
}

func (s *llqServer) serve(w dns.ResponseWriter, r *dns.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := new(dns.Msg).SetReply(r)
	q := r.Question[0]
	t := r.IsTsig()
	if t == nil || w.TsigStatus() != nil || t.Hdr.Name != aliceKey.Name {
		if t == nil && q.Qtype == dns.TypeSRV && strings.HasPrefix(q.Name, "_dns-") {
			// Discovery asks in clear: this server offers no LLQ.
			m.Rcode = dns.RcodeNameError
			w.WriteMsg(m)
			return
		}
		s.unsigned++
		m.Rcode = dns.RcodeNotAuth
		w.WriteMsg(m)
		return
	}
	opts, _ := llqopt.From(r)
	switch {
	case len(opts) == 0:
		s.queries = append(s.queries, q)
		if s.servfail {
			m.Rcode = dns.RcodeServerFailure
			break
		}
		m.Answer = s.answersLocked(q)
		if s.forge {
			w.WriteMsg(m)
			return
		}
	case s.refuse:
		m.Rcode = dns.RcodeRefused
		llqopt.Set(m, 1232, llqopt.Option{Opcode: opts[0].Opcode})
	case opts[0].Opcode == llqopt.Setup && opts[0].ID == 0:
		s.nextID++
		l := &fakeLLQ{id: s.nextID, q: q, client: w.RemoteAddr().String()}
		s.llqs[l.id] = l
		s.setups = append(s.setups, *l)
		m.Answer = s.answersLocked(q)
		llqopt.Set(m, 1232, llqopt.Option{Opcode: llqopt.Setup, ID: l.id, Lease: min(opts[0].Lease, 3600)})
	case opts[0].Opcode == llqopt.Refresh:
		o := opts[0]
		if s.llqs[o.ID] == nil {
			llqopt.Set(m, 1232, llqopt.Option{Opcode: llqopt.Refresh, ID: o.ID, Error: llqopt.NoSuchLLQ})
			break
		}
		if o.Lease == 0 {
			delete(s.llqs, o.ID)
		}
		llqopt.Set(m, 1232, llqopt.Option{Opcode: llqopt.Refresh, ID: o.ID, Lease: min(o.Lease, 3600)})
	default:
		llqopt.Set(m, 1232, llqopt.Option{Opcode: opts[0].Opcode, Error: llqopt.FormatErr})
	}
	m.SetTsig(aliceKey.Name, aliceKey.Algorithm, 300, time.Now().Unix())
	w.WriteMsg(m)
}

func (s *llqServer) answersLocked(q dns.Question) []dns.RR {
	var out []dns.RR
	for _, rr := range s.zone {
		if strings.EqualFold(rr.Header().Name, q.Name) && rr.Header().Rrtype == q.Qtype {
			out = append(out, dns.Copy(rr))
		}
	}
	return out
}

// add puts records in the zone and tells the LLQs they answer.
func (s *llqServer) add(rrs ...string) {
	s.t.Helper()
	for _, r := range rrs {
		rr := mustRR(s.t, r)
		s.mu.Lock()
		s.zone = append(s.zone, rr)
		s.pushLocked(rr, false)
		s.mu.Unlock()
	}
}

// del takes records out of the zone and tells the LLQs they answered.
func (s *llqServer) del(rrs ...string) {
	s.t.Helper()
	for _, r := range rrs {
		rr := mustRR(s.t, r)
		s.mu.Lock()
		n := len(s.zone)
		s.zone = slices.DeleteFunc(s.zone, func(z dns.RR) bool { return dns.IsDuplicate(z, rr) })
		if len(s.zone) == n {
			s.t.Errorf("del: %v is not in the zone", rr)
		}
		s.pushLocked(rr, true)
		s.mu.Unlock()
	}
}

func (s *llqServer) pushLocked(rr dns.RR, removed bool) {
	for _, l := range s.llqs {
		if !strings.EqualFold(l.q.Name, rr.Header().Name) || l.q.Qtype != rr.Header().Rrtype {
			continue
		}
		c := s.conns[l.client]
		if c == nil {
			continue
		}
		m := new(dns.Msg)
		m.Id = dns.Id()
		m.Response, m.Authoritative = true, true
		m.Question = []dns.Question{l.q}
		a := dns.Copy(rr)
		if removed {
			a.Header().Ttl = llqopt.RemoveTTL
		}
		m.Answer = []dns.RR{a}
		llqopt.Set(m, 1232, llqopt.Option{Opcode: llqopt.Event, ID: l.id})
		m.SetTsig(aliceKey.Name, aliceKey.Algorithm, 300, time.Now().Unix())
		b, _, err := dns.TsigGenerateWithProvider(m, tsigauth.HMAC(aliceKey.Secret), "", false)
		if err != nil {
			s.t.Error(err)
			return
		}
		c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
	}
}

// dropConns closes the TCP connections from the server's side, as a
// restarting server would.
func (s *llqServer) dropConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, c := range s.conns {
		c.Close()
		delete(s.conns, k)
	}
}

func (s *llqServer) set(f func(*llqServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *llqServer) gotSetups() []fakeLLQ {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.setups)
}

// live returns the questions of the live LLQs, as "name type".
func (s *llqServer) live() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.llqs {
		out = append(out, dns.CanonicalName(l.q.Name)+" "+dns.TypeToString[l.q.Qtype])
	}
	slices.Sort(out)
	return out
}

func (s *llqServer) counts() (queries, unsigned int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queries), s.unsigned
}

func mustRR(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
