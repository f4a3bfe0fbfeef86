package test

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
	"github.com/openbtmm/btmm/test/coredns"
)

// Stock clients: what BIND's nsupdate and dig, Knot's knsupdate and Apple's
// mDNSResponder send, against bin/coredns.

// TestUserZoneSOA: each user's domain answers its SOA in the Answer
// section; a missing name below it is NXDOMAIN with the user's SOA.
func TestUserZoneSOA(t *testing.T) {
	s := startServer(t, corefile("", ""), alice)
	dig := needTool(t, "dig", "bind9-dnsutils")
	words := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	out, err := run(t, "", dig, "@127.0.0.1", "-p", itoa(s.Port), "+norec", "alice.members.example.com", "SOA")
	if err != nil || !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "ANSWER: 1,") ||
		!strings.Contains(words(out), "ANSWER SECTION: alice.members.example.com. 60 IN SOA ns1.members.example.com.") {
		t.Fatalf("dig alice's SOA: %v\n%s", err, out)
	}
	out, err = run(t, "", dig, "@127.0.0.1", "-p", itoa(s.Port), "+norec", "nosuch.alice.members.example.com", "A")
	if err != nil || !strings.Contains(out, "status: NXDOMAIN") ||
		!strings.Contains(words(out), "AUTHORITY SECTION: alice.members.example.com. 30 IN SOA") {
		t.Fatalf("dig a missing name under alice: %v\n%s", err, out)
	}
	// The serial moves with a change in alice's domain.
	before := query(t, s.Addr(), "alice.members.example.com.", dns.TypeSOA).Answer[0].(*dns.SOA).Serial
	if out, err := nsupdate(t, s, alice, "update add x.alice.members.example.com. 60 A 192.0.2.1"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if after := query(t, s.Addr(), "alice.members.example.com.", dns.TypeSOA).Answer[0].(*dns.SOA).Serial; after == before {
		t.Errorf("alice's serial stayed %d after a change in her domain", after)
	}
}

// dnssd is a DNS-SD registration on three names of a user's domain, as a
// client sends it in one UPDATE, and its removal with class NONE deletes.
func dnssd(user string) (register, deregister []string, check map[string]string) {
	svc, list, types := "web._http._tcp."+user, "_http._tcp."+user, "_services._dns-sd._udp."+user
	register = []string{
		"update delete " + svc + " SRV",
		"update add " + svc + " 60 SRV 0 0 80 laptop." + user,
		"update delete " + svc + " TXT",
		"update add " + svc + " 60 TXT \"path=/\"",
		"update add " + list + " 60 PTR " + svc,
		"update add " + types + " 60 PTR " + list,
	}
	deregister = []string{
		"update delete " + svc + " SRV 0 0 80 laptop." + user,
		"update delete " + svc + " TXT \"path=/\"",
		"update delete " + list + " PTR " + svc,
		"update delete " + types + " PTR " + list,
	}
	check = map[string]string{svc + "|SRV": "0 0 80 laptop." + user, svc + "|TXT": "\"path=/\"", list + "|PTR": svc, types + "|PTR": list}
	return register, deregister, check
}

// checkDNSSD asks for each record of check; present says whether each must
// be there.
func checkDNSSD(t *testing.T, s *coredns.Server, check map[string]string, present bool) {
	t.Helper()
	for k, want := range check {
		name, typ, _ := strings.Cut(k, "|")
		r := query(t, s.Addr(), name, dns.StringToType[typ])
		got := len(r.Answer) == 1 && strings.HasSuffix(r.Answer[0].String(), "\t"+want)
		if got != present {
			t.Errorf("%s %s: %v, want present %t (%s)", name, typ, r.Answer, present, want)
		}
	}
}

// TestMultiNameUpdates: nsupdate with HMAC-MD5 and with HMAC-SHA256, and
// knsupdate, each send one message that deletes and adds an SRV and a TXT
// and adds two PTRs on three names, then one that removes them.
func TestMultiNameUpdates(t *testing.T) {
	s := startServer(t, corefile("", ""), alice, dave)
	for _, k := range []testKey{dave, alice} {
		t.Run("nsupdate "+k.alg, func(t *testing.T) {
			reg, dereg, check := dnssd(k.name)
			// No zone line: nsupdate finds the user's zone by SOA queries
			// to the server and names it in the zone section.
			bin := needTool(t, "nsupdate", "bind9-dnsutils")
			for i, cmds := range [][]string{reg, dereg} {
				script := fmt.Sprintf("server 127.0.0.1 %d\n%s\nsend\n", s.UpdatePort, strings.Join(cmds, "\n"))
				if out, err := run(t, script, bin, "-d", "-y", k.ySpec()); err != nil || !strings.Contains(out, "ZONE SECTION:\n;"+k.name) {
					t.Fatalf("nsupdate: %v (want the zone section to name %s)\n%s", err, k.name, out)
				}
				checkDNSSD(t, s, check, i == 0)
			}
		})
	}
	t.Run("knsupdate", func(t *testing.T) {
		bin := needTool(t, "knsupdate", "knot-dnsutils")
		reg, dereg, check := dnssd(alice.name)
		for i, cmds := range [][]string{reg, dereg} {
			script := fmt.Sprintf("server 127.0.0.1 %d\nzone %s\n%s\nsend\nanswer\n", s.UpdatePort, alice.name, strings.Join(cmds, "\n"))
			if out, err := run(t, script, bin, "-y", alice.ySpec()); err != nil || !strings.Contains(out, "NOERROR") {
				t.Fatalf("knsupdate: %v\n%s", err, out)
			}
			checkDNSSD(t, s, check, i == 0)
		}
	})
}

// appleRegistration builds, octet by octet, a registration the way
// mDNSResponder sends one: zone section = the user's zone, "delete RRset"
// (class ANY, RDLENGTH 0) then "add" for SRV and TXT, "add" for PTR, the
// SRV target compressed against the zone name and the host's A record's
// owner a pointer into the SRV's RDATA, EDNS option 2 with lease 7200, and
// an HMAC-MD5 TSIG with fudge 300 over exactly these octets.
func appleRegistration(t *testing.T, k testKey, id uint16, now time.Time) []byte {
	t.Helper()
	b := []byte{byte(id >> 8), byte(id), 0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0} // UPDATE; counts below
	name := func(labels ...string) []byte {
		var out []byte
		for _, l := range labels {
			out = append(out, byte(len(l)))
			out = append(out, l...)
		}
		return out
	}
	ptr := func(off int) []byte { return []byte{0xC0 | byte(off>>8), byte(off)} }
	rr := func(owner []byte, typ, class uint16, ttl uint32, rdata []byte) {
		b = append(b, owner...)
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint16(b, class)
		b = binary.BigEndian.AppendUint32(b, ttl)
		b = binary.BigEndian.AppendUint16(b, uint16(len(rdata)))
		b = append(b, rdata...)
	}
	user := strings.Split(strings.TrimSuffix(k.name, "."), ".")
	zoneOff := len(b)
	b = append(b, name(user...)...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, dns.TypeSOA)
	b = binary.BigEndian.AppendUint16(b, dns.ClassINET)

	// SRV: delete the RRset, then add; the target "laptop" + the zone.
	svcOff := len(b)
	svc := append(name("web", "_http", "_tcp"), ptr(zoneOff)...)
	rr(svc, dns.TypeSRV, dns.ClassANY, 0, nil)
	srvRdataOff := len(b) + 2 + 10
	targetOff := srvRdataOff + 6
	rr(ptr(svcOff), dns.TypeSRV, dns.ClassINET, 7200, append([]byte{0, 0, 0, 0, 0, 80}, append(name("laptop"), ptr(zoneOff)...)...))
	// TXT: delete the RRset, then add.
	rr(ptr(svcOff), dns.TypeTXT, dns.ClassANY, 0, nil)
	rr(ptr(svcOff), dns.TypeTXT, dns.ClassINET, 7200, append([]byte{6}, "path=/"...))
	// PTR: _http._tcp.ZONE (a pointer into the SRV owner) -> the service.
	rr(ptr(svcOff+4), dns.TypePTR, dns.ClassINET, 7200, ptr(svcOff))
	// The host's address, its owner a pointer into the SRV's RDATA.
	rr(ptr(targetOff), dns.TypeA, dns.ClassANY, 0, nil)
	rr(ptr(targetOff), dns.TypeA, dns.ClassINET, 7200, []byte{198, 51, 100, 7})
	binary.BigEndian.PutUint16(b[8:], 7) // the update section
	// OPT with UPDATE-LEASE 7200.
	rr([]byte{0}, dns.TypeOPT, 1440, 0, []byte{0, 2, 0, 4, 0, 0, 0x1C, 0x20})
	binary.BigEndian.PutUint16(b[10:], 1)

	// TSIG over exactly these octets (RFC 8945 §4.3.3).
	secret, _ := base64.StdEncoding.DecodeString(k.secret)
	mac := hmac.New(md5.New, secret)
	mac.Write(b)
	keyName := name(user...)
	keyName = append(keyName, 0)
	alg := append(name("hmac-md5", "sig-alg", "reg", "int"), 0)
	signed := uint64(now.Unix())
	times := []byte{byte(signed >> 40), byte(signed >> 32), byte(signed >> 24), byte(signed >> 16), byte(signed >> 8), byte(signed), 1, 0x2C} // fudge 300
	mac.Write(keyName)
	mac.Write([]byte{0, 255, 0, 0, 0, 0})
	mac.Write(alg)
	mac.Write(times)
	mac.Write([]byte{0, 0, 0, 0}) // error, other len
	sum := mac.Sum(nil)
	rdata := append(append([]byte{}, alg...), times...)
	rdata = binary.BigEndian.AppendUint16(rdata, uint16(len(sum)))
	rdata = append(rdata, sum...)
	rdata = binary.BigEndian.AppendUint16(rdata, id)
	rdata = append(rdata, 0, 0, 0, 0)
	rr(keyName, dns.TypeTSIG, dns.ClassANY, 0, rdata)
	binary.BigEndian.PutUint16(b[10:], 2)
	return b
}

// TestAppleRegistration: the registration as Apple's client builds it is
// taken, and the same message with one bit flipped is BADSIG.
func TestAppleRegistration(t *testing.T) {
	s := startServer(t, corefile("", ""), dave)
	msg := appleRegistration(t, dave, 0x4242, time.Now())
	// The server could not check this MAC over a re-encoding: the DNS
	// library packs the names another way.
	parsed := new(dns.Msg)
	if err := parsed.Unpack(msg); err != nil {
		t.Fatalf("the registration does not parse: %v", err)
	}
	if again, _ := parsed.Pack(); string(again) == string(msg) {
		t.Fatal("the registration packs again to the same octets: it tests nothing")
	}

	flipped := append([]byte(nil), msg...)
	flipped[strings.Index(string(flipped), "path=/")] ^= 0x01 // "path=/" -> "qath=/"
	r := new(dns.Msg)
	if err := r.Unpack(exchangeRaw(t, "udp", s.UpdateAddr(), flipped)); err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeNotAuth || r.IsTsig() == nil || r.IsTsig().Error != dns.RcodeBadSig {
		t.Fatalf("one bit flipped: %v, want NOTAUTH with BADSIG", r)
	}

	r = new(dns.Msg)
	if err := r.Unpack(exchangeRaw(t, "udp", s.UpdateAddr(), msg)); err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeSuccess || r.Id != 0x4242 {
		t.Fatalf("Apple's registration: %v", r)
	}
	if l, ok, err := updatelease.From(r); err != nil || !ok || l.Lease != 7200 {
		t.Errorf("granted lease %v %t %v, want 7200", l, ok, err)
	}
	for _, q := range []struct {
		name string
		typ  uint16
	}{
		{"web._http._tcp.dave.members.example.com.", dns.TypeSRV}, {"web._http._tcp.dave.members.example.com.", dns.TypeTXT},
		{"_http._tcp.dave.members.example.com.", dns.TypePTR}, {"laptop.dave.members.example.com.", dns.TypeA},
	} {
		if r := query(t, s.Addr(), q.name, q.typ); len(r.Answer) != 1 {
			t.Errorf("%s %s after the registration: %v", q.name, dns.TypeToString[q.typ], r.Answer)
		}
	}
}

// bigUpdate is an UPDATE of about size octets: TXT records of 250 octets
// at one name of alice's.
func bigUpdate(size int) *dns.Msg {
	m := new(dns.Msg).SetUpdate(zone)
	for i := 0; m.Len() < size-300; i++ {
		m.Insert([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: "big.alice.members.example.com.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
			Txt: []string{fmt.Sprintf("%04d%s", i, strings.Repeat("x", 246))}}})
	}
	return m
}

// TestLargeUpdates: a 3,000-octet UPDATE over UDP and a 60,000-octet one
// over TCP are applied.
func TestLargeUpdates(t *testing.T) {
	s := startServer(t, corefile("", ""), alice)
	for _, tc := range []struct {
		netw string
		size int
	}{{"udp", 3000}, {"tcp", 60000}} {
		m := bigUpdate(tc.size)
		want := len(m.Ns)
		m.SetTsig(alice.name, alice.miekgAlg(), 300, time.Now().Unix())
		buf, mac, err := dns.TsigGenerateWithProvider(m, secretProvider(alice.secret), "", false)
		if err != nil {
			t.Fatal(err)
		}
		if len(buf) < tc.size-300 || len(buf) > tc.size+300 {
			t.Fatalf("%d octets, want about %d", len(buf), tc.size)
		}
		raw := exchangeRaw(t, tc.netw, s.UpdateAddr(), buf)
		r := new(dns.Msg)
		if err := r.Unpack(raw); err != nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("%d octets over %s: %v %v", len(buf), tc.netw, r, err)
		}
		if err := dns.TsigVerifyWithProvider(raw, secretProvider(alice.secret), mac, false); err != nil {
			t.Errorf("reply MAC: %v", err)
		}
		a, _, err := (&dns.Client{Net: "tcp"}).Exchange(new(dns.Msg).SetQuestion("big.alice.members.example.com.", dns.TypeTXT), s.Addr())
		if err != nil || len(a.Answer) != want {
			t.Fatalf("after the %d-octet UPDATE over %s: %d TXT, want %d (%v)", len(buf), tc.netw, len(a.Answer), want, err)
		}
		upd := new(dns.Msg).SetUpdate(zone)
		upd.RemoveName([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: "big.alice.members.example.com."}}})
		if r, _, _, err := signed(t, "tcp", s.UpdateAddr(), alice, upd, time.Now()); err != nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("clean up: %v %v", r, err)
		}
	}
}

// TestReplayRefused: the same signed UPDATE sent again is refused with
// BADTIME and renews no lease; after a kill -9 and a restart it is still
// refused.
func TestReplayRefused(t *testing.T) {
	s := startServer(t, corefile("min 3s\n\t\tmax 3s", ""), alice)
	m := new(dns.Msg).SetUpdate(zone)
	m.Insert([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "r.alice.members.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}})
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, updatelease.Lease{Lease: 3}.Option())
	m.SetTsig(alice.name, alice.miekgAlg(), 300, time.Now().Unix())
	buf, _, err := dns.TsigGenerateWithProvider(m, secretProvider(alice.secret), "", false)
	if err != nil {
		t.Fatal(err)
	}
	send := func() *dns.Msg {
		r := new(dns.Msg)
		if err := r.Unpack(exchangeRaw(t, "udp", s.UpdateAddr(), buf)); err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := time.Now()
	if r := send(); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("first: %v", r)
	}
	time.Sleep(1500 * time.Millisecond)
	if r := send(); r.Rcode != dns.RcodeNotAuth || r.IsTsig() == nil || r.IsTsig().Error != dns.RcodeBadTime {
		t.Fatalf("the same UPDATE again: %v, want NOTAUTH with BADTIME", r)
	}
	// Leased for 3 s from the first: gone by then, not 3 s after the replay.
	time.Sleep(time.Until(first.Add(3600 * time.Millisecond)))
	if r := query(t, s.Addr(), "r.alice.members.example.com.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("3.6 s after the first UPDATE: %v; the replay renewed the lease", r)
	}
	s.Kill()
	s.Start(zone)
	if r := send(); r.Rcode != dns.RcodeNotAuth || r.IsTsig() == nil || r.IsTsig().Error != dns.RcodeBadTime {
		t.Fatalf("the same UPDATE after kill -9 and a restart: %v, want NOTAUTH with BADTIME", r)
	}
	if r := query(t, s.Addr(), "r.alice.members.example.com.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("the replay after the restart was applied: %v", r)
	}
}

// TestBadUpdates: each malformed or misdirected UPDATE gets its RCODE and
// changes nothing.
func TestBadUpdates(t *testing.T) {
	s := startServer(t, corefile("", ""), alice, bob)
	if out, err := nsupdate(t, s, bob, "update add pc.bob.members.example.com. 60 A 192.0.2.2"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	before := serial(t, s.Addr())
	add := func(zoneName, name string) *dns.Msg {
		m := new(dns.Msg).SetUpdate(zoneName)
		rr, _ := dns.NewRR(name + " 60 IN A 192.0.2.9")
		m.Insert([]dns.RR{rr})
		return m
	}
	for _, tc := range []struct {
		name  string
		key   testKey
		m     *dns.Msg
		rcode int
	}{
		{"zone section: another user's zone", alice, add(bob.name, "x.bob.members.example.com."), dns.RcodeNotAuth},
		{"alice's zone signed with bob's key", bob, add(alice.name, "x.alice.members.example.com."), dns.RcodeNotAuth},
		{"prerequisite on bob's name", alice, func() *dns.Msg {
			m := add(zone, "x.alice.members.example.com.")
			m.NameNotUsed([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: "pc.bob.members.example.com."}}}) // false: it exists
			return m
		}(), dns.RcodeRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, raw, mac, err := signed(t, "udp", s.UpdateAddr(), tc.key, tc.m, time.Now())
			if r.Rcode == dns.RcodeNotAuth {
				// miekg/dns refuses to verify any NOTAUTH reply (and then
				// leaves raw as it was): check the MAC here.
				err = tsigauth.VerifyReply(raw, tc.key.secret, mac)
			}
			if r.Rcode != tc.rcode || err != nil || r.IsTsig().Error != 0 {
				t.Errorf("%v (reply MAC: %v), want %s, signed", r, err, dns.RcodeToString[tc.rcode])
			}
		})
	}

	good := add(zone, "x.alice.members.example.com.")
	good.SetTsig(alice.name, alice.miekgAlg(), 300, time.Now().Unix())
	goodRaw, _, _ := dns.TsigGenerateWithProvider(good, secretProvider(alice.secret), "", false)
	notLast := new(dns.Msg)
	notLast.Unpack(goodRaw)
	notLast.Extra = append(notLast.Extra, &dns.A{Hdr: dns.RR_Header{Name: "x.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(192, 0, 2, 1)})
	notLastRaw, _ := notLast.Pack()
	over := bigUpdate(5000)
	over.SetTsig(alice.name, alice.miekgAlg(), 300, time.Now().Unix())
	overRaw, _, _ := dns.TsigGenerateWithProvider(over, secretProvider(alice.secret), "", false)
	for _, tc := range []struct {
		name, netw string
		raw        []byte
	}{
		{"cut short", "tcp", goodRaw[:len(goodRaw)-10]},
		{"TSIG not last", "udp", notLastRaw},
		{"5,000 octets over UDP without EDNS", "udp", overRaw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := new(dns.Msg)
			if err := r.Unpack(exchangeRaw(t, tc.netw, s.UpdateAddr(), tc.raw)); err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeFormatError {
				t.Errorf("%v, want FORMERR", r)
			}
		})
	}
	for _, name := range []string{"x.alice.members.example.com.", "x.bob.members.example.com.", "big.alice.members.example.com."} {
		if r := query(t, s.Addr(), name, dns.TypeA); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s after the bad UPDATEs: %v", name, r)
		}
	}
	if after := serial(t, s.Addr()); after != before {
		t.Errorf("serial %d -> %d: a bad UPDATE changed the zone", before, after)
	}
	// The server block's own port takes no UPDATEs.
	r, _, _, _ := signed(t, "udp", s.Addr(), alice, add(zone, "x.alice.members.example.com."), time.Now())
	if r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("an UPDATE to the query port: %v, want NOTIMP", r)
	}
}
