package dnspush

import (
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/btmm"
	"github.com/openbtmm/btmm/plugin/pkg/dso"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

const (
	zone   = "members.example.com."
	alice  = "alice.members.example.com."
	bob    = "bob.members.example.com."
	host   = "laptop.alice.members.example.com."
	secret = "F42STmDnGmFG1jyejcOLBJFIHgcGsAPxrqiDTI9YerQ="
)

var aliceKey = keyfile.Key{Name: alice, Algorithm: dns.HmacSHA256, Secret: secret}

type fixture struct {
	srv  *Server
	st   *boltstore.Store
	addr string
}

// newFixture runs a DNS Push server on 127.0.0.1 over a real store, with
// alice in the store's users, as setup would.
func newFixture(t *testing.T, mod func(*policy)) *fixture {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "zone.db"), zone, boltstore.Options{SweepInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.PutUser(store.User{Key: aliceKey}); err != nil {
		t.Fatal(err)
	}
	p := &policy{zone: btmm.NewForTest(zone, st), tsigRequired: true, limit: 4, keepalive: defaultKeepalive, inactivity: defaultInactivity}
	if mod != nil {
		mod(p)
	}
	srv, err := listen(rawdns.Addrs{TCP: "127.0.0.1:0"}, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &fixture{srv: srv, st: st, addr: srv.raw.StreamAddrs()[0].String()}
}

func (f *fixture) set(t *testing.T, name string, recs ...store.Record) {
	t.Helper()
	if _, err := f.st.Update(func(tx store.Tx) error { return tx.Set(name, recs) }); err != nil {
		t.Fatal(err)
	}
}

func rr(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// client is a DSO client over one TCP connection, reading what the
// server sends, in order.
type client struct {
	t    *testing.T
	c    net.Conn
	msgs chan []byte
	done chan struct{}
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cl := &client{t: t, c: c, msgs: make(chan []byte, 64), done: make(chan struct{})}
	go func() {
		defer close(cl.done)
		var hdr [2]byte
		for {
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			cl.msgs <- b
		}
	}()
	t.Cleanup(func() { c.Close() })
	return cl
}

func (cl *client) send(b []byte) {
	cl.t.Helper()
	buf := binary.BigEndian.AppendUint16(nil, uint16(len(b)))
	if _, err := cl.c.Write(append(buf, b...)); err != nil {
		cl.t.Fatal(err)
	}
}

func (cl *client) sendDSO(m *dso.Message) {
	cl.t.Helper()
	b, err := m.Pack()
	if err != nil {
		cl.t.Fatal(err)
	}
	cl.send(b)
}

// next returns the next DSO message from the server.
func (cl *client) next() *dso.Message {
	cl.t.Helper()
	select {
	case b := <-cl.msgs:
		m, err := dso.Parse(b)
		if err != nil {
			cl.t.Fatalf("the server sent %x: %v", b, err)
		}
		return m
	case <-cl.done:
		cl.t.Fatal("the server closed the session")
	case <-time.After(5 * time.Second):
		cl.t.Fatal("nothing from the server in 5 s")
	}
	return nil
}

// none checks that the server sends nothing for d.
func (cl *client) none(d time.Duration) {
	cl.t.Helper()
	select {
	case b := <-cl.msgs:
		cl.t.Fatalf("an unexpected message: %x", b)
	case <-cl.done:
		cl.t.Fatal("the server closed the session")
	case <-time.After(d):
	}
}

// closed checks that the server ends the session within d.
func (cl *client) closed(d time.Duration) time.Duration {
	cl.t.Helper()
	start := time.Now()
	for {
		select {
		case <-cl.msgs:
		case <-cl.done:
			return time.Since(start)
		case <-time.After(d - time.Since(start)):
			cl.t.Fatalf("the session is still open after %v", d)
		}
	}
}

// prove sends a query signed with k, as a client shows which user it is.
func (cl *client) prove(k keyfile.Key) *dns.Msg {
	cl.t.Helper()
	m := new(dns.Msg).SetQuestion(k.Name, dns.TypeSOA)
	m.SetTsig(k.Name, k.Algorithm, 300, time.Now().Unix())
	b, _, err := dns.TsigGenerateWithProvider(m, tsigauth.HMAC(k.Secret), "", false)
	if err != nil {
		cl.t.Fatal(err)
	}
	cl.send(b)
	select {
	case b := <-cl.msgs:
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			cl.t.Fatal(err)
		}
		return r
	case <-time.After(5 * time.Second):
		cl.t.Fatal("no answer to the signed query")
	}
	return nil
}

func (cl *client) subscribe(id uint16, name string, qtype uint16) *dso.Message {
	cl.t.Helper()
	tlv, err := dso.Subscribe(dso.Question{Name: name, Type: qtype, Class: dns.ClassINET})
	if err != nil {
		cl.t.Fatal(err)
	}
	cl.sendDSO(&dso.Message{ID: id, TLVs: []dso.TLV{tlv}})
	r := cl.next()
	if !r.Response || r.ID != id {
		cl.t.Fatalf("the answer to SUBSCRIBE %d: %+v", id, r)
	}
	return r
}

// pushed reads the next message, which must be a PUSH, and returns its
// change records.
func (cl *client) pushed() []dso.Change {
	cl.t.Helper()
	m := cl.next()
	prim, ok := m.Primary()
	if m.ID != 0 || m.Response || !ok || prim.Type != dso.TypePush {
		cl.t.Fatalf("want a PUSH, got %+v", m)
	}
	changes, err := dso.ParsePush(prim.Data)
	if err != nil {
		cl.t.Fatal(err)
	}
	return changes
}

// TestSubscribePush: a session that proved alice's key subscribes to one
// of her names: the response, the initial PUSH of what is there, then a
// PUSH for an added record, for a removed one, and for a lease's end.
func TestSubscribePush(t *testing.T) {
	f := newFixture(t, nil)
	f.set(t, host, store.Record{RR: rr(t, host+" 60 IN AAAA fd00::1")}, store.Record{RR: rr(t, host+" 60 IN A 192.0.2.1")})
	cl := dial(t, f.addr)
	if r := cl.prove(aliceKey); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("the signed SOA query: %v", r)
	}
	if r := cl.subscribe(7, host, dns.TypeAAAA); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("SUBSCRIBE: %s", dns.RcodeToString[r.Rcode])
	}
	if c := cl.pushed(); len(c) != 1 || c[0].Type != dns.TypeAAAA || c[0].TTL != 60 {
		t.Fatalf("initial PUSH: %+v", c)
	}

	f.set(t, host, store.Record{RR: rr(t, host+" 60 IN AAAA fd00::1")}, store.Record{RR: rr(t, host+" 60 IN AAAA fd00::2")},
		store.Record{RR: rr(t, host+" 60 IN A 192.0.2.1")})
	c := cl.pushed()
	if len(c) != 1 || c[0].TTL != 60 {
		t.Fatalf("PUSH of an added record: %+v", c)
	}
	if r, _ := c[0].RR(); r.(*dns.AAAA).AAAA.String() != "fd00::2" {
		t.Errorf("the added record: %v", r)
	}
	f.set(t, host, store.Record{RR: rr(t, host+" 60 IN AAAA fd00::2")}, store.Record{RR: rr(t, host+" 60 IN A 192.0.2.9")})
	c = cl.pushed()
	if len(c) != 1 || c[0].TTL != dso.TTLRemove {
		t.Fatalf("PUSH of a removed record (the A changed too, and is not pushed): %+v", c)
	}
	if r, _ := c[0].RR(); r.(*dns.AAAA).AAAA.String() != "fd00::1" {
		t.Errorf("the removed record: %v", r)
	}

	f.set(t, host, store.Record{RR: rr(t, host+" 60 IN AAAA fd00::2"), Expires: time.Now().Add(500 * time.Millisecond)})
	c = cl.pushed()
	if len(c) != 1 || c[0].TTL != dso.TTLRemove {
		t.Fatalf("PUSH at the lease's end: %+v", c)
	}
	cl.none(300 * time.Millisecond)
}

// TestSubscribeRefused: what each refusal answers (RFC 8765 §6.2.2).
func TestSubscribeRefused(t *testing.T) {
	f := newFixture(t, nil)
	cl := dial(t, f.addr)
	r := cl.subscribe(1, host, dns.TypeAAAA)
	if r.Rcode != dns.RcodeRefused || len(r.TLVs) != 1 || r.TLVs[0].Type != dso.TypeRetryDelay {
		t.Errorf("a session that proved no key: %s %+v, want REFUSED with a retry delay", dns.RcodeToString[r.Rcode], r.TLVs)
	}
	cl.prove(aliceKey)
	if r := cl.subscribe(2, "laptop."+bob, dns.TypeAAAA); r.Rcode != dns.RcodeRefused {
		t.Errorf("alice subscribing to bob's name: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if r := cl.subscribe(3, "www.example.org.", dns.TypeA); r.Rcode != dns.RcodeNotAuth {
		t.Errorf("a name outside the zone: %s, want NOTAUTH", dns.RcodeToString[r.Rcode])
	}
	for id := uint16(10); id < 14; id++ {
		if r := cl.subscribe(id, host, dns.TypeA); r.Rcode != dns.RcodeSuccess {
			t.Fatalf("subscription %d: %s", id, dns.RcodeToString[r.Rcode])
		}
	}
	if r := cl.subscribe(14, host, dns.TypeTXT); r.Rcode != dns.RcodeRefused {
		t.Errorf("over the limit of 4: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if r := cl.subscribe(10, host, dns.TypeTXT); r.Rcode != dns.RcodeFormatError {
		t.Errorf("a message ID in use: %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}
	cl.sendDSO(&dso.Message{ID: 20, TLVs: []dso.TLV{{Type: 0xF000, Data: []byte{1}}}})
	if r := cl.next(); r.ID != 20 || r.Rcode != dso.RcodeDSOTypeNI {
		t.Errorf("an unknown DSO-TYPE: %+v, want DSOTYPENI", r)
	}
	// A signed query with a bad key gets NOTAUTH and proves nothing.
	other := dial(t, f.addr)
	bad := aliceKey
	bad.Secret = "c2VjcmV0c2VjcmV0c2VjcmV0MTI="
	if r := other.prove(bad); r.Rcode != dns.RcodeNotAuth {
		t.Errorf("a query with a wrong secret: %s, want NOTAUTH", dns.RcodeToString[r.Rcode])
	}
	if r := other.subscribe(1, host, dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Errorf("after a failed proof: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}

// TestUnsubscribe: no PUSH after an UNSUBSCRIBE, and an unknown ID is
// ignored.
func TestUnsubscribe(t *testing.T) {
	f := newFixture(t, nil)
	cl := dial(t, f.addr)
	cl.prove(aliceKey)
	cl.subscribe(5, host, dns.TypeAAAA)
	cl.sendDSO(&dso.Message{TLVs: []dso.TLV{dso.Unsubscribe(99)}})
	cl.sendDSO(&dso.Message{TLVs: []dso.TLV{dso.Unsubscribe(5)}})
	// The server serves a session's messages in order: once a Keepalive
	// sent after them is answered, the UNSUBSCRIBEs were served.
	cl.sendDSO(&dso.Message{ID: 6, TLVs: []dso.TLV{dso.Keepalive{}.TLV()}})
	cl.next()
	f.set(t, host, store.Record{RR: rr(t, host+" 60 IN AAAA fd00::1")})
	cl.none(300 * time.Millisecond)
	// The ID may be used again.
	if r := cl.subscribe(5, host, dns.TypeAAAA); r.Rcode != dns.RcodeSuccess {
		t.Errorf("SUBSCRIBE with the ID of an ended subscription: %s", dns.RcodeToString[r.Rcode])
	}
	if c := cl.pushed(); len(c) != 1 {
		t.Errorf("initial PUSH: %+v", c)
	}
}

// TestKeepalive: the server's values are the ones in its response; a
// session without subscriptions ends after twice the inactivity timeout
// (at least 5 s), keepalives notwithstanding.
func TestKeepalive(t *testing.T) {
	f := newFixture(t, func(p *policy) { p.inactivity = time.Second })
	cl := dial(t, f.addr)
	cl.sendDSO(&dso.Message{ID: 1, TLVs: []dso.TLV{dso.Keepalive{Inactivity: 3600000, Interval: 3600000}.TLV()}})
	r := cl.next()
	prim, _ := r.Primary()
	k, err := dso.ParseKeepalive(prim.Data)
	if !r.Response || r.Rcode != 0 || err != nil || k.Inactivity != 1000 || k.Interval != uint32(defaultKeepalive.Milliseconds()) {
		t.Fatalf("Keepalive response: %+v %+v %v", r, k, err)
	}
	go func() {
		for range 8 {
			time.Sleep(time.Second)
			b, _ := (&dso.Message{ID: 2, TLVs: []dso.TLV{dso.Keepalive{}.TLV()}}).Pack()
			cl.c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
		}
	}()
	if d := cl.closed(8 * time.Second); d < 4*time.Second {
		t.Errorf("an idle session with keepalives was closed after %v, before 5 s", d)
	}
}

// TestMissedKeepalives: a session with a live subscription that sends
// nothing is closed after twice the keepalive interval (10 s, the least
// RFC 8490 allows).
func TestMissedKeepalives(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 20 s; run without -short")
	}
	f := newFixture(t, func(p *policy) { p.keepalive = minKeepalive })
	cl := dial(t, f.addr)
	cl.prove(aliceKey)
	cl.subscribe(1, host, dns.TypeAAAA)
	d := cl.closed(30 * time.Second)
	if d < 15*time.Second {
		t.Errorf("closed after %v, before twice the interval", d)
	}
	t.Logf("a silent session closed %v after its last message", d.Round(100*time.Millisecond))
}

// TestProtocolErrors: what RFC 8490 calls fatal ends the session.
func TestProtocolErrors(t *testing.T) {
	f := newFixture(t, nil)
	for _, c := range []struct {
		what string
		m    dso.Message
	}{
		{"a unidirectional message before the session", dso.Message{TLVs: []dso.TLV{dso.Unsubscribe(1)}}},
		{"a response from the client", dso.Message{ID: 3, Response: true, TLVs: []dso.TLV{dso.Keepalive{}.TLV()}}},
		{"a SUBSCRIBE without an ID", dso.Message{TLVs: []dso.TLV{{Type: dso.TypeSubscribe, Data: []byte{0, 0, 1, 0, 1}}}}},
	} {
		cl := dial(t, f.addr)
		cl.sendDSO(&c.m)
		cl.closed(5 * time.Second)
	}
	cl := dial(t, f.addr)
	cl.send([]byte{0, 1, 0x30, 0, 0, 1, 0, 0, 0, 0, 0, 0}) // a DSO header with a question count
	cl.closed(5 * time.Second)
}

// TestRevokedKeyClosesSession: revoking alice ends her sessions at once.
func TestRevokedKeyClosesSession(t *testing.T) {
	f := newFixture(t, nil)
	cl := dial(t, f.addr)
	cl.prove(aliceKey)
	cl.subscribe(1, host, dns.TypeAAAA)
	if _, err := f.st.DeleteUser(alice); err != nil {
		t.Fatal(err)
	}
	cl.closed(5 * time.Second)
}
