package tsigupdate

import (
	"context"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/btmm"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
)

var (
	aliceKey = keyfile.Key{Name: alice, Algorithm: dns.HmacSHA256, Secret: "F42STmDnGmFG1jyejcOLBJFIHgcGsAPxrqiDTI9YerQ="}
	aliceMD5 = keyfile.Key{Name: alice, Algorithm: dns.HmacMD5, Secret: "ZGF2ZXNlY3JldGRhdmVzZWNyZXQ="}
)

// sign packs m signed with k at time at, as a client would send it, and
// returns the octets and the request's MAC.
func sign(t *testing.T, m *dns.Msg, k keyfile.Key, at time.Time) ([]byte, string) {
	t.Helper()
	m.SetTsig(k.Name, k.Algorithm, 300, at.Unix())
	buf, mac, err := dns.TsigGenerateWithProvider(m, tsigauth.HMAC(k.Secret), "", false)
	if err != nil {
		t.Fatal(err)
	}
	return buf, mac
}

// grantAll is a ddul-lease stand-in: every UPDATE that asks gets 30 minutes,
// and an option of 6 octets is malformed.
type grantAll struct{}

func (grantAll) Grant(r *dns.Msg) (updatelease.Grant, error) {
	if o := r.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if local, ok := opt.(*dns.EDNS0_LOCAL); ok && local.Code == updatelease.Code {
				return updatelease.Grant{}, updatelease.ErrMalformed
			}
		}
	}
	_, ok, err := updatelease.From(r)
	if err != nil || !ok {
		return updatelease.Grant{}, err
	}
	return updatelease.Grant{Records: 30 * time.Minute, Keys: 30 * time.Minute, Reply: updatelease.Lease{Lease: 1800}.Option()}, nil
}

// listener returns the plugin serving a fresh store as its update
// listeners do, with alice's key of the given algorithm.
func listener(t *testing.T, k keyfile.Key) *TsigUpdate {
	u, _ := listenerClock(t, k)
	return u
}

// listenerClock is listener, with the store's clock.
func listenerClock(t *testing.T, k keyfile.Key) (*TsigUpdate, *clock) {
	t.Helper()
	st, clk := newStore(t)
	u := newUpdater()
	z := btmm.NewForTest(zone, st, k)
	u.zone, u.Next = z, z
	u.lease = grantAll{}
	return u, clk
}

func insert(name string, lease bool) *dns.Msg {
	m := new(dns.Msg).SetUpdate(zone)
	m.Insert(rrs(name + " 3600 IN A 192.0.2.1"))
	if lease {
		m.SetEdns0(1232, false)
		o := m.IsEdns0()
		o.Option = append(o.Option, updatelease.Lease{Lease: 60}.Option())
	}
	return m
}

// TestRespond drives the update listener's handler with the octets a
// client sends and reads the octets it answers.
func TestRespond(t *testing.T) {
	const addr = host + " 3600 IN A 192.0.2.1"
	stranger := keyfile.Key{Name: "carol.members.example.com.", Algorithm: dns.HmacSHA256, Secret: aliceKey.Secret}
	badLease := insert(host, false)
	badLease.SetEdns0(1232, false)
	badLease.IsEdns0().Option = append(badLease.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte{1}})

	tests := []struct {
		name      string
		req       *dns.Msg
		key       *keyfile.Key // signs req if not nil
		serverKey keyfile.Key  // alice's key as the server has it
		rcode     int
		tsigError uint16
		stored    []string // the records at host afterwards
		echo      bool     // the reply carries the granted lease
	}{
		{name: "signed", req: insert(host, true), key: &aliceKey, serverKey: aliceKey,
			rcode: dns.RcodeSuccess, stored: []string{addr}, echo: true},
		{name: "signed with HMAC-MD5", req: insert(host, true), key: &aliceMD5, serverKey: aliceMD5,
			rcode: dns.RcodeSuccess, stored: []string{addr}, echo: true},
		{name: "signed, no lease asked", req: insert(host, false), key: &aliceKey, serverKey: aliceKey,
			rcode: dns.RcodeSuccess, stored: []string{addr}},
		{name: "unsigned", req: insert(host, true), serverKey: aliceKey, rcode: dns.RcodeRefused},
		{name: "unknown key", req: insert(host, true), key: &stranger, serverKey: aliceKey,
			rcode: dns.RcodeNotAuth, tsigError: dns.RcodeBadKey},
		{name: "the key with another algorithm", req: insert(host, true), key: &aliceMD5, serverKey: aliceKey,
			rcode: dns.RcodeNotAuth, tsigError: dns.RcodeBadKey},
		{name: "refused: no lease echoed", req: insert("bob.members.example.com.", true), key: &aliceKey, serverKey: aliceKey,
			rcode: dns.RcodeRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := listener(t, tc.serverKey)
			var raw []byte
			var mac string
			if tc.key != nil {
				raw, mac = sign(t, tc.req, *tc.key, time.Now())
			} else {
				raw, _ = tc.req.Pack()
			}
			out := u.respond(raw, true, nil)
			resp := new(dns.Msg)
			if err := resp.Unpack(out); err != nil {
				t.Fatalf("reply: %v", err)
			}
			if resp.Rcode != tc.rcode || resp.Opcode != dns.OpcodeUpdate || !resp.Response || resp.Id != tc.req.Id {
				t.Errorf("reply rcode %s opcode %d qr %t, want %s to the UPDATE",
					dns.RcodeToString[resp.Rcode], resp.Opcode, resp.Response, dns.RcodeToString[tc.rcode])
			}
			sig := resp.IsTsig()
			switch {
			case tc.key == nil && sig != nil:
				t.Error("the reply to an unsigned request is signed")
			case tc.key != nil && sig == nil:
				t.Error("the reply to a signed request is unsigned")
			case sig != nil && sig.Error != tc.tsigError:
				t.Errorf("TSIG error %d, want %d", sig.Error, tc.tsigError)
			case sig != nil && tc.tsigError == 0:
				if err := tsigauth.VerifyReply(out, tc.key.Secret, mac); err != nil {
					t.Errorf("the reply's MAC: %v", err)
				}
			}
			l, ok, err := updatelease.From(resp)
			switch {
			case err != nil:
				t.Errorf("lease in the reply: %v", err)
			case ok != tc.echo:
				t.Errorf("reply carries a lease: %t, want %t", ok, tc.echo)
			case ok && l != (updatelease.Lease{Lease: 1800}):
				t.Errorf("reply's lease %+v, want 1800s", l)
			}
			if got := lookup(t, u.zone.Store(), host); !slices.Equal(got, canon(tc.stored)) {
				t.Errorf("records at %s: %q, want %q", host, got, tc.stored)
			}
		})
	}
}

// TestReplay: the same signed UPDATE twice is refused the second time with
// BADTIME, signed, and changes nothing (no renewed lease); one signed
// before the server's start is refused the same way.
func TestReplay(t *testing.T) {
	for _, k := range []keyfile.Key{aliceKey, aliceMD5} {
		t.Run(k.Algorithm, func(t *testing.T) {
			u, clk := listenerClock(t, k)
			raw, mac := sign(t, insert(host, true), k, time.Now())
			first := new(dns.Msg)
			if err := first.Unpack(u.respond(raw, false, nil)); err != nil || first.Rcode != dns.RcodeSuccess {
				t.Fatalf("first: %v %v", first, err)
			}
			before := stored(t, u.zone.Store(), host)
			clk.Advance(time.Minute) // an UPDATE applied now would renew the lease
			out := u.respond(raw, false, nil)
			again := new(dns.Msg)
			if err := again.Unpack(out); err != nil {
				t.Fatal(err)
			}
			if again.Rcode != dns.RcodeNotAuth || again.IsTsig() == nil || again.IsTsig().Error != dns.RcodeBadTime {
				t.Fatalf("the same UPDATE again: %v, want NOTAUTH with BADTIME", again)
			}
			if err := tsigauth.VerifyReply(out, k.Secret, mac); err != nil {
				t.Errorf("the BADTIME reply is not signed: %v", err)
			}
			if after := stored(t, u.zone.Store(), host); !slices.EqualFunc(before, after, func(a, b store.Record) bool { return a.Expires.Equal(b.Expires) }) {
				t.Errorf("the replay changed the records: %v, then %v", before, after)
			}

			// A new process on the same store (a restart) refuses it too.
			restarted := newUpdater()
			restarted.zone, restarted.lease, restarted.Next = u.zone, u.lease, u.Next
			again = new(dns.Msg)
			if err := again.Unpack(restarted.respond(raw, false, nil)); err != nil {
				t.Fatal(err)
			}
			if again.Rcode != dns.RcodeNotAuth || again.IsTsig().Error != dns.RcodeBadTime {
				t.Errorf("the same UPDATE after a restart: %v, want NOTAUTH with BADTIME", again)
			}

			// An UPDATE that failed its prerequisite cannot be sent again
			// once the zone has changed.
			cond := insert("new.alice.members.example.com.", false)
			cond.Used(rrs(other + " 0 IN A 192.0.2.7"))
			condRaw, _ := sign(t, cond, k, time.Now())
			resp := new(dns.Msg)
			if err := resp.Unpack(u.respond(condRaw, false, nil)); err != nil || resp.Rcode != dns.RcodeNXRrset {
				t.Fatalf("prerequisite not met: %v %v, want NXRRSET", resp, err)
			}
			add := new(dns.Msg).SetUpdate(zone)
			add.Insert(rrs(other + " 3600 IN A 192.0.2.7"))
			addRaw, _ := sign(t, add, k, time.Now())
			resp = new(dns.Msg)
			if err := resp.Unpack(u.respond(addRaw, false, nil)); err != nil || resp.Rcode != dns.RcodeSuccess {
				t.Fatalf("adding the prerequisite's record: %v %v", resp, err)
			}
			resp = new(dns.Msg)
			if err := resp.Unpack(u.respond(condRaw, false, nil)); err != nil || resp.Rcode != dns.RcodeNotAuth || resp.IsTsig().Error != dns.RcodeBadTime {
				t.Errorf("the failed UPDATE again, now that its prerequisite holds: %v, want NOTAUTH with BADTIME", resp)
			}
		})
	}
}

// TestRespondMalformed: what cannot be read or taken is FORMERR (or no
// answer at all) and changes nothing.
func TestRespondMalformed(t *testing.T) {
	u := listener(t, aliceKey)
	signed, _ := sign(t, insert(host, true), aliceKey, time.Now())

	// The TSIG RR not last: an A record after it.
	notLast := new(dns.Msg)
	notLast.Unpack(signed)
	notLast.Extra = append(notLast.Extra, rrs("x.example. 60 IN A 192.0.2.1")...)
	notLastRaw, _ := notLast.Pack()

	// A datagram over its limit: 5000 octets without EDNS.
	big := insert(host, false)
	big.Insert(rrs(host + " 3600 IN TXT \"" + strings.Repeat("x", 250) + "\""))
	for i := range 20 {
		big.Insert([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: host, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
			Txt: []string{strings.Repeat(string(rune('a'+i)), 250)}}})
	}
	bigRaw, _ := sign(t, big, aliceKey, time.Now())

	tests := []struct {
		name string
		raw  []byte
		udp  bool
		none bool // no answer at all
	}{
		{"cut short", signed[:len(signed)-5], false, false},
		{"the header only, counts say more", signed[:12], false, false},
		{"TSIG not last", notLastRaw, false, false},
		{"over the UDP limit", bigRaw, true, false},
		{"11 octets", signed[:11], false, true},
		{"a response", func() []byte { b := slices.Clone(signed); b[2] |= 0x80; return b }(), false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := u.respond(tc.raw, tc.udp, nil)
			if tc.none {
				if out != nil {
					t.Fatalf("answered %x", out)
				}
				return
			}
			resp := new(dns.Msg)
			if err := resp.Unpack(out); err != nil {
				t.Fatal(err)
			}
			if resp.Rcode != dns.RcodeFormatError || !resp.Response || resp.Id != binary.BigEndian.Uint16(tc.raw) || resp.Opcode != dns.OpcodeUpdate {
				t.Errorf("reply %v, want FORMERR to the UPDATE", resp)
			}
			if got := lookup(t, u.zone.Store(), host); len(got) != 0 {
				t.Errorf("records at %s: %q, want none", host, got)
			}
		})
	}
	// The same large UPDATE over TCP is taken.
	bigRaw, _ = sign(t, big, aliceKey, time.Now())
	resp := new(dns.Msg)
	if err := resp.Unpack(u.respond(bigRaw, false, nil)); err != nil || resp.Rcode != dns.RcodeSuccess {
		t.Errorf("a %d-octet UPDATE over TCP: %v %v", len(bigRaw), resp, err)
	}
}

// TestRespondQuery: queries on the update listeners are answered by the
// plugins after tsig-update, signed when they were, cut to the client's
// buffer over UDP.
func TestRespondQuery(t *testing.T) {
	u := listener(t, aliceKey)
	q := new(dns.Msg).SetQuestion("laptop.alice.members.example.com.", dns.TypeSOA)
	raw, mac := sign(t, q, aliceKey, time.Now())
	out := u.respond(raw, true, nil)
	resp := new(dns.Msg)
	if err := resp.Unpack(out); err != nil {
		t.Fatal(err)
	}
	if resp.Rcode != dns.RcodeNameError || len(resp.Ns) != 1 || resp.Ns[0].Header().Name != alice {
		t.Errorf("SOA query below alice's domain: %v, want NXDOMAIN with alice's SOA", resp)
	}
	if err := tsigauth.VerifyReply(out, aliceKey.Secret, mac); err != nil {
		t.Errorf("reply MAC: %v", err)
	}

	// A large answer over UDP without EDNS: cut to 512 octets, TC set.
	var adds []dns.RR
	for i := range 40 {
		adds = append(adds, &dns.AAAA{Hdr: dns.RR_Header{Name: host, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 60},
			AAAA: []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i)}})
	}
	upd := new(dns.Msg).SetUpdate(zone)
	upd.Insert(adds)
	updRaw, _ := sign(t, upd, aliceKey, time.Now())
	u.respond(updRaw, false, nil)
	q = new(dns.Msg).SetQuestion(host, dns.TypeAAAA)
	qRaw, _ := q.Pack()
	out = u.respond(qRaw, true, nil)
	resp = new(dns.Msg)
	if err := resp.Unpack(out); err != nil {
		t.Fatal(err)
	}
	if len(out) > 512 || !resp.Truncated {
		t.Errorf("40 AAAA over UDP: %d octets, TC %t; want at most 512 and TC", len(out), resp.Truncated)
	}
	out = u.respond(qRaw, false, nil)
	resp.Unpack(out)
	if len(resp.Answer) != 40 || resp.Truncated {
		t.Errorf("40 AAAA over TCP: %d answers, TC %t", len(resp.Answer), resp.Truncated)
	}
}

// TestServeDNS: on the server block's own listeners tsig-update checks the
// TSIG of queries and signs the replies.
func TestServeDNS(t *testing.T) {
	st, _ := newStore(t)
	u := newUpdater()
	z := btmm.NewForTest(zone, st, aliceKey)
	u.zone, u.Next = z, z
	q := new(dns.Msg).SetQuestion(zone, dns.TypeSOA)
	q.SetTsig(alice, dns.HmacSHA256, 300, time.Now().Unix())
	buf, _, _ := dns.TsigGenerate(q, aliceKey.Secret, "", false)
	r := new(dns.Msg)
	r.Unpack(buf)
	w := &bytesWriter{}
	if _, err := u.ServeDNS(context.Background(), w, r); err != nil {
		t.Fatal(err)
	}
	if w.Msg == nil || w.Msg.Rcode != dns.RcodeSuccess || len(w.Msg.Answer) != 1 || w.Msg.IsTsig() == nil {
		t.Errorf("signed SOA query: %v, want the SOA, signed", w.Msg)
	}

	stranger := new(dns.Msg).SetQuestion(zone, dns.TypeSOA)
	stranger.SetTsig("carol.members.example.com.", dns.HmacSHA256, 300, time.Now().Unix())
	buf, _, _ = dns.TsigGenerate(stranger, aliceKey.Secret, "", false)
	r = new(dns.Msg)
	r.Unpack(buf)
	w = &bytesWriter{}
	u.ServeDNS(context.Background(), w, r)
	if w.Msg == nil || w.Msg.Rcode != dns.RcodeNotAuth || w.Msg.IsTsig() == nil || w.Msg.IsTsig().Error != dns.RcodeBadKey {
		t.Errorf("query with an unknown key: %v, want NOTAUTH/BADKEY", w.Msg)
	}
}

// bytesWriter keeps the reply written to it, as a message or as the
// octets that signingWriter sends.
type bytesWriter struct {
	test.ResponseWriter
	Msg *dns.Msg
}

func (w *bytesWriter) WriteMsg(m *dns.Msg) error { w.Msg = m; return nil }

func (w *bytesWriter) Write(b []byte) (int, error) {
	w.Msg = new(dns.Msg)
	return len(b), w.Msg.Unpack(b)
}
