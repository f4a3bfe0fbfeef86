package llq

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/btmm"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

const (
	zone   = "members.example.com."
	alice  = "alice.members.example.com."
	host   = "laptop.alice.members.example.com."
	secret = "F42STmDnGmFG1jyejcOLBJFIHgcGsAPxrqiDTI9YerQ="
)

func init() {
	// Retransmission in milliseconds, so that tests see LLQs end.
	resendAfter = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
}

type fixture struct {
	s   *Server
	st  *boltstore.Store
	udp string // the server's UDP address
	tcp string
}

// newFixture runs an LLQ server on 127.0.0.1 over a real store, with
// alice's key, set up the way setup does.
func newFixture(t testing.TB, tsigRequired bool, limit int) *fixture {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "z.db"), zone, boltstore.Options{SweepInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	z := btmm.NewForTest(zone, st, keyfile.Key{Name: alice, Algorithm: dns.HmacSHA256, Secret: secret})
	s := newServer(time.Now)
	cfg := &config{addrs: rawdns.Addrs{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"}}
	if err := s.listen(cfg); err != nil {
		t.Fatal(err)
	}
	s.setPolicy(&policy{zone: z, min: 15 * time.Minute, max: 2 * time.Hour, tsigRequired: tsigRequired, limit: limit})
	s.start()
	t.Cleanup(func() { s.Close() })
	return &fixture{s: s, st: st, udp: s.raw.UDPAddr().String(), tcp: s.raw.StreamAddrs()[0].String()}
}

// put sets name's records in the store, as an UPDATE would.
func (f *fixture) put(t *testing.T, name string, records ...string) {
	t.Helper()
	var recs []store.Record
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, store.Record{RR: rr})
	}
	if _, err := f.st.Update(func(tx store.Tx) error { return tx.Set(name, recs) }); err != nil {
		t.Fatal(err)
	}
}

// client is a bare LLQ client over one socket, for the wire-level tests.
type client struct {
	t    *testing.T
	c    net.Conn
	tcp  bool
	sign bool
	mac  string // the last request's MAC
}

func dialUDP(t *testing.T, addr string) *client {
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c}
}

func dialUDPFrom(t *testing.T, local, addr string) *client {
	raddr, _ := net.ResolveUDPAddr("udp", addr)
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(local)}, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c}
}

func dialTCP(t *testing.T, addr string) *client {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, tcp: true}
}

func (c *client) send(m *dns.Msg) {
	c.t.Helper()
	var b []byte
	var err error
	if c.sign {
		m.SetTsig(alice, dns.HmacSHA256, 300, time.Now().Unix())
		b, c.mac, err = dns.TsigGenerateWithProvider(m, tsigauth.HMAC(secret), "", false)
	} else {
		b, err = m.Pack()
	}
	if err != nil {
		c.t.Fatal(err)
	}
	if c.tcp {
		b = append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)
	}
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the next message, or nil after wait.
func (c *client) recv(wait time.Duration) (*dns.Msg, []byte) {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	var n int
	var err error
	if c.tcp {
		if _, err = ioReadFull(c.c, buf[:2]); err == nil {
			n = int(buf[0])<<8 | int(buf[1])
			_, err = ioReadFull(c.c, buf[:n])
		}
	} else {
		n, err = c.c.Read(buf)
	}
	if err != nil {
		return nil, nil
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		c.t.Fatalf("unpacking a message from the server: %v", err)
	}
	return m, buf[:n]
}

func (c *client) mustRecv(wait time.Duration) (*dns.Msg, []byte) {
	c.t.Helper()
	m, raw := c.recv(wait)
	if m == nil {
		c.t.Fatalf("nothing from the server within %v", wait)
	}
	return m, raw
}

func llqQuery(name string, qtype uint16, o llqopt.Option) *dns.Msg {
	m := new(dns.Msg).SetQuestion(name, qtype)
	llqopt.Set(m, 1232, o)
	return m
}

func option(t *testing.T, m *dns.Msg) llqopt.Option {
	t.Helper()
	opts, err := llqopt.From(m)
	if err != nil || len(opts) != 1 {
		t.Fatalf("reply has LLQ options %v (%v), want one:\n%v", opts, err, m)
	}
	return opts[0]
}

// setupUDP runs the four-way setup and returns the ACK.
func (c *client) setupUDP(name string, qtype uint16, lease uint32) (*dns.Msg, llqopt.Option) {
	c.t.Helper()
	c.send(llqQuery(name, qtype, llqopt.Option{Opcode: llqopt.Setup, Lease: lease}))
	ch, _ := c.mustRecv(2 * time.Second)
	o := option(c.t, ch)
	if o.Error != llqopt.NoError || o.ID == 0 || len(ch.Answer) != 0 {
		c.t.Fatalf("challenge: %v", ch)
	}
	c.send(llqQuery(name, qtype, llqopt.Option{Opcode: llqopt.Setup, ID: o.ID, Lease: o.Lease}))
	ack, _ := c.mustRecv(2 * time.Second)
	return ack, option(c.t, ack)
}

// ack acknowledges an event as RFC 8764 §6.3 says: a response with the
// event's ID and option.
func (c *client) ack(ev *dns.Msg) {
	c.t.Helper()
	m := new(dns.Msg)
	m.Id, m.Response = ev.Id, true
	m.Question = ev.Question
	opts, _ := llqopt.From(ev)
	llqopt.Set(m, 1232, opts...)
	c.send(m)
}

// udpListener is a client's UDP port that receives events after its
// TCP connection ended.
type udpListener struct {
	c    *net.UDPConn
	port uint16
}

func dialUDPListen(t *testing.T) *udpListener {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpListener{c: c, port: uint16(c.LocalAddr().(*net.UDPAddr).Port)}
}

func (u *udpListener) mustRecv(t *testing.T, wait time.Duration) *dns.Msg {
	t.Helper()
	u.c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, _, err := u.c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("nothing by UDP within %v", wait)
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return m
}

type (
	storeTx     = store.Tx
	storeRecord = store.Record
)
