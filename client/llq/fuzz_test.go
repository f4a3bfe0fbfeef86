package llq

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

// recorder is a transport that keeps what is written and reads nothing.
type recorder struct {
	mu     sync.Mutex
	writes [][]byte
}

func (r *recorder) read() ([]byte, error) { select {} }
func (r *recorder) write(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, append([]byte(nil), b...))
	return nil
}
func (r *recorder) close() error              { return nil }
func (r *recorder) localAddr() netip.AddrPort { return netip.AddrPort{} }

const fuzzID = 0x0123456789abcdef

// fuzzClient is a client on a recorder with one established LLQ, fuzzID,
// and a setup waiting for its reply.
func fuzzClient(key *keyfile.Key) (*Client, *recorder) {
	rec := &recorder{}
	c := newClient(Config{Server: "192.0.2.1:5352", EventBuffer: 1 << 10}, key, 7200, false, rec)
	l := &LLQ{c: c, name: host, qtype: dns.TypeAAAA, key: question{host, dns.TypeAAAA}, expires: time.Now().Add(time.Hour)}
	l.id.Store(fuzzID)
	c.llqs[fuzzID] = l
	c.questions[l.key] = l
	s := &LLQ{c: c, name: "desktop.alice.members.example.com.", qtype: dns.TypeSRV, key: question{"desktop.alice.members.example.com.", dns.TypeSRV}}
	c.questions[s.key] = s
	c.pending[4711] = &pending{q: dns.Question{Name: s.name, Qtype: s.qtype, Qclass: dns.ClassINET}, setup: s, ch: make(chan *dns.Msg, 1)}
	return c, rec
}

func fuzzEvent(id uint64, key *keyfile.Key) []byte {
	m := new(dns.Msg)
	m.Id = 999
	m.Response = true
	m.Question = []dns.Question{{Name: host, Qtype: dns.TypeAAAA, Qclass: dns.ClassINET}}
	a, _ := dns.NewRR(host + " 60 IN AAAA fd00::1")
	r, _ := dns.NewRR(host + " 4294967295 IN AAAA fd00::2")
	m.Answer = []dns.RR{a, r}
	llqopt.Set(m, 1232, llqopt.Option{Opcode: llqopt.Event, ID: id})
	if key == nil {
		b, _ := m.Pack()
		return b
	}
	m.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
	b, _, _ := dns.TsigGenerateWithProvider(m, tsigauth.HMAC(key.Secret), "", false)
	return b
}

// FuzzHandle feeds arbitrary messages to the reader's handling, with and
// without a key: it must not panic, must deliver events only for the
// client's LLQ, and must acknowledge nothing else.
func FuzzHandle(f *testing.F) {
	f.Add(fuzzEvent(fuzzID, nil))
	f.Add(fuzzEvent(fuzzID+1, nil))
	f.Add(fuzzEvent(fuzzID, testKey))
	chal := new(dns.Msg).SetQuestion("desktop.alice.members.example.com.", dns.TypeSRV)
	chal.Id, chal.Response = 4711, true
	llqopt.Set(chal, 1232, llqopt.Option{Opcode: llqopt.Setup, ID: 42, Lease: 3600})
	b, _ := chal.Pack()
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, key := range []*keyfile.Key{nil, testKey} {
			c, rec := fuzzClient(key)
			c.handle(append([]byte(nil), b...), time.Now())
			c.handle(append([]byte(nil), b...), time.Now()) // as if retransmitted
			delivered := 0
			for len(c.events) > 0 {
				ev := <-c.events
				if ev.ID != fuzzID {
					t.Fatalf("event for %#x", ev.ID)
				}
				delivered++
			}
			if delivered > 1 {
				t.Fatalf("a message delivered %d times", delivered)
			}
			if len(rec.writes) != 0 && len(rec.writes) != 2 {
				t.Fatalf("%d acks for two copies", len(rec.writes))
			}
			for _, w := range rec.writes {
				a := new(dns.Msg)
				if err := a.Unpack(w); err != nil {
					t.Fatalf("ack does not parse: %v", err)
				}
				opts, _ := llqopt.From(a)
				ours := false
				for _, o := range opts {
					ours = ours || (o.Opcode == llqopt.Event && o.ID == fuzzID)
				}
				if !a.Response || !ours || (key != nil) != (a.IsTsig() != nil) {
					t.Fatalf("bad ack %v", a)
				}
			}
			if delivered == 1 && len(rec.writes) == 0 {
				t.Fatal("delivered without an ack")
			}
			// Only a reply to the pending setup may register an LLQ.
			for id, l := range c.llqs {
				if id != fuzzID && (l.name != "desktop.alice.members.example.com." || l.ID() != id) {
					t.Fatalf("registered %#x", id)
				}
			}
		}
	})
}
