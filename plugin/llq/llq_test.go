package llq

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyrate"
	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

func TestUDPSetupAndEvents(t *testing.T) {
	f := newFixture(t, false, 10)
	f.put(t, host, host+" 60 IN AAAA fd00::1")
	c := dialUDP(t, f.udp)
	ack, o := c.setupUDP(host, dns.TypeAAAA, 7200)
	if o.Opcode != llqopt.Setup || o.Error != llqopt.NoError || o.Lease < 7190 || o.Lease > 7200 {
		t.Fatalf("ACK option %+v, want SETUP NO-ERROR with about 7200 s left", o)
	}
	if len(ack.Answer) != 1 || ack.Answer[0].(*dns.AAAA).AAAA.String() != "fd00::1" {
		t.Fatalf("ACK does not carry the current answer: %v", ack)
	}

	// An addition.
	f.put(t, host, host+" 60 IN AAAA fd00::1", host+" 60 IN AAAA fd00::2")
	ev, _ := c.mustRecv(2 * time.Second)
	eo := option(t, ev)
	if !ev.Response || eo.Opcode != llqopt.Event || eo.ID != o.ID || len(ev.Answer) != 1 ||
		ev.Answer[0].(*dns.AAAA).AAAA.String() != "fd00::2" || ev.Answer[0].Header().Ttl != 60 {
		t.Fatalf("add event: %v", ev)
	}
	c.ack(ev)
	// A removal: the record with TTL 0xFFFFFFFF (§6.2).
	f.put(t, host, host+" 60 IN AAAA fd00::2")
	ev, _ = c.mustRecv(2 * time.Second)
	if len(ev.Answer) != 1 || ev.Answer[0].(*dns.AAAA).AAAA.String() != "fd00::1" || ev.Answer[0].Header().Ttl != llqopt.RemoveTTL {
		t.Fatalf("remove event: %v", ev)
	}
	c.ack(ev)
	// Acknowledged events are not sent again; other types are not sent.
	f.put(t, host, host+" 60 IN AAAA fd00::2", host+" 60 IN TXT \"x\"")
	if m, _ := c.recv(500 * time.Millisecond); m != nil {
		t.Fatalf("got %v after acknowledging, for a type nobody watches", m)
	}
}

func TestEventsForExpiredLeases(t *testing.T) {
	f := newFixture(t, false, 10)
	c := dialUDP(t, f.udp)
	c.setupUDP(host, dns.TypeA, 900)
	rr, _ := dns.NewRR(host + " 60 IN A 192.0.2.1")
	f.st.Update(func(tx storeTx) error {
		return tx.Set(host, []storeRecord{{RR: rr, Expires: time.Now().Add(300 * time.Millisecond)}})
	})
	ev, _ := c.mustRecv(2 * time.Second)
	c.ack(ev)
	ev, _ = c.mustRecv(3 * time.Second)
	if len(ev.Answer) != 1 || ev.Answer[0].Header().Ttl != llqopt.RemoveTTL {
		t.Fatalf("the lease's end did not come as a remove event: %v", ev)
	}
	c.ack(ev)
}

func TestChallengeStopsSpoofing(t *testing.T) {
	f := newFixture(t, false, 10)
	victim := dialUDP(t, f.udp)
	attacker := dialUDP(t, f.udp)
	victim.send(llqQuery(host, dns.TypeA, llqopt.Option{Opcode: llqopt.Setup, Lease: 900}))
	ch, _ := victim.mustRecv(2 * time.Second)
	o := option(t, ch)
	// The same request again: the same challenge, not a second LLQ.
	victim.send(llqQuery(host, dns.TypeA, llqopt.Option{Opcode: llqopt.Setup, Lease: 900}))
	again, _ := victim.mustRecv(2 * time.Second)
	if option(t, again).ID != o.ID {
		t.Fatalf("a repeated setup request got another ID")
	}
	// Someone else, even knowing the ID, cannot answer the challenge.
	attacker.send(llqQuery(host, dns.TypeA, llqopt.Option{Opcode: llqopt.Setup, ID: o.ID, Lease: o.Lease}))
	r, _ := attacker.mustRecv(2 * time.Second)
	if option(t, r).Error != llqopt.NoSuchLLQ || len(r.Answer) != 0 {
		t.Fatalf("a challenge response from another address: %v", r)
	}
	// Nothing goes to an address that has not answered its challenge.
	f.put(t, host, host+" 60 IN A 192.0.2.1")
	if m, _ := victim.recv(500 * time.Millisecond); m != nil {
		t.Fatalf("an event before the challenge was answered: %v", m)
	}
	if m, _ := attacker.recv(10 * time.Millisecond); m != nil {
		t.Fatalf("the attacker got %v", m)
	}
	// A wrong lease echo is refused too.
	victim.send(llqQuery(host, dns.TypeA, llqopt.Option{Opcode: llqopt.Setup, ID: o.ID, Lease: o.Lease + 3600}))
	r, _ = victim.mustRecv(2 * time.Second)
	if option(t, r).Error != llqopt.FormatErr {
		t.Fatalf("a challenge response with another lease: %v", r)
	}
}

func TestUnacknowledgedEventsEndTheLLQ(t *testing.T) {
	f := newFixture(t, false, 10)
	c := dialUDP(t, f.udp)
	_, o := c.setupUDP(host, dns.TypeA, 900)
	f.put(t, host, host+" 60 IN A 192.0.2.1")
	var ids []uint16
	start := time.Now()
	for range 3 {
		ev, _ := c.mustRecv(2 * time.Second)
		ids = append(ids, ev.Id)
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("retransmissions have other message IDs: %v", ids)
	}
	if m, _ := c.recv(time.Second); m != nil {
		t.Fatalf("a fourth transmission: %v", m)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("three transmissions within %v: no back-off", d)
	}
	// The LLQ is gone: a refresh finds nothing, and no more events come.
	c.send(llqQuery(host, dns.TypeA, llqopt.Option{Opcode: llqopt.Refresh, ID: o.ID, Lease: 900}))
	r, _ := c.mustRecv(2 * time.Second)
	if option(t, r).Error != llqopt.NoSuchLLQ {
		t.Fatalf("refresh of an LLQ that should be gone: %v", r)
	}
	f.put(t, host, host+" 60 IN A 192.0.2.2")
	if m, _ := c.recv(300 * time.Millisecond); m != nil {
		t.Fatalf("an event for a deleted LLQ: %v", m)
	}
}

func TestRefreshAndCancel(t *testing.T) {
	f := newFixture(t, false, 10)
	c := dialUDP(t, f.udp)
	_, o := c.setupUDP(host, dns.TypeA, 900)
	for _, tc := range []struct{ ask, want uint32 }{{1800, 1800}, {60, 900}, {99999, 7200}} {
		c.send(llqQuery(host, dns.TypeA, llqopt.Option{Opcode: llqopt.Refresh, ID: o.ID, Lease: tc.ask}))
		r, _ := c.mustRecv(2 * time.Second)
		ro := option(t, r)
		if ro.Opcode != llqopt.Refresh || ro.Error != llqopt.NoError || ro.ID != o.ID || ro.Lease != tc.want || len(r.Answer) != 0 {
			t.Fatalf("refresh asking %d: %v, want lease %d", tc.ask, r, tc.want)
		}
	}
	// Someone else's refresh of this ID, and an unknown ID.
	other := dialUDP(t, f.udp)
	other.send(llqQuery("desktop.alice.members.example.com.", dns.TypeA, llqopt.Option{Opcode: llqopt.Refresh, ID: o.ID, Lease: 900}))
	if r, _ := other.mustRecv(2 * time.Second); option(t, r).Error != llqopt.NoSuchLLQ {
		t.Fatalf("refresh for another question: %v", r)
	}
	c.send(llqQuery(host, dns.TypeA, llqopt.Option{Opcode: llqopt.Refresh, ID: o.ID + 1, Lease: 900}))
	if r, _ := c.mustRecv(2 * time.Second); option(t, r).Error != llqopt.NoSuchLLQ {
		t.Fatalf("refresh of an unknown ID: %v", r)
	}
	// Cancel: lease 0.
	c.send(llqQuery(host, dns.TypeA, llqopt.Option{Opcode: llqopt.Refresh, ID: o.ID, Lease: 0}))
	if r, _ := c.mustRecv(2 * time.Second); option(t, r).Error != llqopt.NoError || option(t, r).Lease != 0 {
		t.Fatalf("cancel: %v", r)
	}
	f.put(t, host, host+" 60 IN A 192.0.2.1")
	if m, _ := c.recv(300 * time.Millisecond); m != nil {
		t.Fatalf("an event after cancel: %v", m)
	}
}

func TestTSIG(t *testing.T) {
	f := newFixture(t, true, 10)
	c := dialUDP(t, f.udp)
	// Unsigned, with tsig required: REFUSED.
	c.send(llqQuery(host, dns.TypeA, llqopt.Option{Opcode: llqopt.Setup, Lease: 900}))
	if r, _ := c.mustRecv(2 * time.Second); r.Rcode != dns.RcodeRefused {
		t.Fatalf("unsigned setup: %v", r)
	}
	// Alice's key may not watch bob's names, nor the apex.
	c.sign = true
	for _, name := range []string{"laptop.bob.members.example.com.", zone, "example.org."} {
		c.send(llqQuery(name, dns.TypeA, llqopt.Option{Opcode: llqopt.Setup, Lease: 900}))
		r, raw := c.mustRecv(2 * time.Second)
		if r.Rcode != dns.RcodeRefused {
			t.Fatalf("alice watching %s: %v", name, r)
		}
		if err := dns.TsigVerifyWithProvider(raw, tsigauth.HMAC(secret), c.mac, false); err != nil {
			t.Fatalf("the refusal is not signed: %v", err)
		}
	}
	// A signed setup works, replies and events are signed.
	c.send(llqQuery(host, dns.TypeA, llqopt.Option{Opcode: llqopt.Setup, Lease: 900}))
	ch, raw := c.mustRecv(2 * time.Second)
	if err := dns.TsigVerifyWithProvider(raw, tsigauth.HMAC(secret), c.mac, false); err != nil {
		t.Fatalf("challenge not signed: %v", err)
	}
	o := option(t, ch)
	c.send(llqQuery(host, dns.TypeA, llqopt.Option{Opcode: llqopt.Setup, ID: o.ID, Lease: o.Lease}))
	if ack, _ := c.mustRecv(2 * time.Second); option(t, ack).Error != llqopt.NoError {
		t.Fatalf("ACK: %v", ack)
	}
	f.put(t, host, host+" 60 IN A 192.0.2.1")
	ev, raw := c.mustRecv(2 * time.Second)
	if err := dns.TsigVerifyWithProvider(raw, tsigauth.HMAC(secret), "", false); err != nil {
		t.Fatalf("event not signed with alice's key: %v", err)
	}
	c.ack(ev)
	// A wrong MAC: NOTAUTH with BADSIG, and no LLQ.
	bad := llqQuery(host, dns.TypeAAAA, llqopt.Option{Opcode: llqopt.Setup, Lease: 900})
	bad.SetTsig(alice, dns.HmacSHA256, 300, time.Now().Unix())
	b, _, _ := dns.TsigGenerateWithProvider(bad, tsigauth.HMAC("b3RoZXJzZWNyZXRvdGhlcnNlY3JldA=="), "", false)
	c.c.Write(b)
	r, _ := c.mustRecv(2 * time.Second)
	if r.Rcode != dns.RcodeNotAuth || r.IsTsig() == nil || r.IsTsig().Error != dns.RcodeBadSig {
		t.Fatalf("a wrong MAC: %v", r)
	}
}

func TestLimit(t *testing.T) {
	f := newFixture(t, false, 2)
	c := dialUDP(t, f.udp)
	c.setupUDP("a.alice.members.example.com.", dns.TypeA, 900)
	c.setupUDP("b.alice.members.example.com.", dns.TypeA, 900)
	c.send(llqQuery("c.alice.members.example.com.", dns.TypeA, llqopt.Option{Opcode: llqopt.Setup, Lease: 900}))
	r, _ := c.mustRecv(2 * time.Second)
	if o := option(t, r); o.Error != llqopt.ServFull || o.Lease != retryAfter || o.ID != 0 {
		t.Fatalf("a third LLQ over a limit of 2: %+v, want SERV-FULL with a retry time", o)
	}
	// Another address (127.0.0.2 is loopback too) has its own allowance.
	other := dialUDPFrom(t, "127.0.0.2", f.udp)
	if _, o := other.setupUDP("c.alice.members.example.com.", dns.TypeA, 900); o.Error != llqopt.NoError {
		t.Fatalf("another address: %+v", o)
	}
}

// TestSetupRate: an address (or key) that sets up more LLQs at once than
// its burst gets SERV-FULL with a retry time for the rest, while another
// address sets up its own.
func TestSetupRate(t *testing.T) {
	f := newFixture(t, false, 100)
	p := *f.s.policy.Load()
	p.setups = keyrate.New(1, 3)
	f.s.setPolicy(&p)
	c := dialUDP(t, f.udp)
	for i := range 3 {
		c.setupUDP(fmt.Sprintf("h%d.alice.members.example.com.", i), dns.TypeA, 900)
	}
	c.send(llqQuery("h3.alice.members.example.com.", dns.TypeA, llqopt.Option{Opcode: llqopt.Setup, Lease: 900}))
	r, _ := c.mustRecv(2 * time.Second)
	if o := option(t, r); o.Error != llqopt.ServFull || o.Lease != retryAfter || o.ID != 0 {
		t.Fatalf("a fourth setup at once over a burst of 3: %+v, want SERV-FULL with a retry time", o)
	}
	other := dialUDPFrom(t, "127.0.0.2", f.udp)
	if _, o := other.setupUDP("h3.alice.members.example.com.", dns.TypeA, 900); o.Error != llqopt.NoError {
		t.Fatalf("another address while the first is over its rate: %+v", o)
	}
}

func TestAnyTypeAndErrors(t *testing.T) {
	f := newFixture(t, false, 10)
	c := dialUDP(t, f.udp)
	c.setupUDP(host, dns.TypeANY, 900)
	f.put(t, host, host+" 60 IN TXT \"hello\"")
	ev, _ := c.mustRecv(2 * time.Second)
	if len(ev.Answer) != 1 || ev.Answer[0].Header().Rrtype != dns.TypeTXT {
		t.Fatalf("an ANY LLQ did not hear of a TXT: %v", ev)
	}
	c.ack(ev)
	// Class ANY: FORMAT-ERR in the option, not FORMERR in the header.
	m := llqQuery(host, dns.TypeA, llqopt.Option{Opcode: llqopt.Setup, Lease: 900})
	m.Question[0].Qclass = dns.ClassANY
	c.send(m)
	r, _ := c.mustRecv(2 * time.Second)
	if r.Rcode != dns.RcodeSuccess || option(t, r).Error != llqopt.FormatErr {
		t.Fatalf("class ANY: %v", r)
	}
	// Version 2: BAD-VERS.
	m = new(dns.Msg).SetQuestion(host, dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_LLQ{Code: llqopt.Code, Version: 2, Opcode: 1})
	c.send(m)
	r, _ = c.mustRecv(2 * time.Second)
	if option(t, r).Error != llqopt.BadVers {
		t.Fatalf("version 2: %v", r)
	}
	// A plain query on the LLQ port is answered as the zone would.
	c.send(new(dns.Msg).SetQuestion(host, dns.TypeTXT))
	if r, _ := c.mustRecv(2 * time.Second); len(r.Answer) != 1 || !r.Authoritative {
		t.Fatalf("a plain query: %v", r)
	}
}

func TestTCPSetupPortHintAndFallback(t *testing.T) {
	f := newFixture(t, false, 10)
	f.put(t, host, host+" 60 IN A 192.0.2.1")
	udp := dialUDPListen(t)
	c := dialTCP(t, f.tcp)
	// Two messages: the connection proves the address. The LLQ-ERROR
	// field carries the UDP port for events after the connection ends.
	c.send(llqQuery(host, dns.TypeA, llqopt.Option{Opcode: llqopt.Setup, Error: llqopt.Error(udp.port), Lease: 900}))
	ack, _ := c.mustRecv(2 * time.Second)
	o := option(t, ack)
	if o.ID == 0 || o.Error != llqopt.NoError || len(ack.Answer) != 1 {
		t.Fatalf("TCP setup: %v", ack)
	}
	f.put(t, host, host+" 60 IN A 192.0.2.2")
	ev, _ := c.mustRecv(2 * time.Second)
	if option(t, ev).ID != o.ID {
		t.Fatalf("event on the connection: %v", ev)
	}
	c.ack(ev)
	// The connection ends: events come by UDP, to the hinted port.
	c.c.Close()
	time.Sleep(100 * time.Millisecond)
	f.put(t, host, host+" 60 IN A 192.0.2.3")
	ev = udp.mustRecv(t, 2*time.Second)
	if option(t, ev).ID != o.ID {
		t.Fatalf("UDP event after the connection closed: %v", ev)
	}
}

func TestManyLLQsOnOneName(t *testing.T) {
	f := newFixture(t, false, 1000)
	var clients []*client
	for range 20 {
		c := dialUDP(t, f.udp)
		c.setupUDP(host, dns.TypeA, 900)
		clients = append(clients, c)
	}
	f.put(t, host, host+" 60 IN A 192.0.2.1")
	for i, c := range clients {
		ev, _ := c.mustRecv(2 * time.Second)
		if len(ev.Answer) != 1 {
			t.Fatalf("client %d: %v", i, ev)
		}
		c.ack(ev)
	}
	f.s.mu.Lock()
	n := len(f.s.t.byID)
	f.s.mu.Unlock()
	if n != 20 {
		t.Fatalf("%d LLQs live, want 20", n)
	}
}
