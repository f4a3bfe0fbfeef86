package btmm

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
	"github.com/openbtmm/btmm/plugin/pkg/store/storetest"
)

const zone = "members.example.com."

func newTestBtmm(t *testing.T, records ...string) *Btmm {
	t.Helper()
	s := storetest.New(t, zone, boltstore.Options{}, records...)
	return &Btmm{
		zone:  zone,
		store: s,
		ns:    []nameServer{{name: "ns1." + zone, addrs: []net.IP{net.ParseIP("192.0.2.53")}}},
		Next:  test.NextHandler(dns.RcodeRefused, nil),
		now:   time.Now,
	}
}

func TestAnswers(t *testing.T) {
	b := newTestBtmm(t,
		"_autotunnel._udp.laptop.alice.members.example.com. 60 IN SRV 0 0 4500 AutoTunnel-02-11-22-FF-FE-33-44-55.alice.members.example.com.",
		"AutoTunnel-02-11-22-FF-FE-33-44-55.alice.members.example.com. 60 IN A 198.51.100.7",
		"AutoTunnel-02-11-22-FF-FE-33-44-55.alice.members.example.com. 60 IN AAAA fd12:3456:789a:bcde:211:22ff:fe33:4455",
		"AutoTunnel-02-11-22-FF-FE-33-44-55.alice.members.example.com. 60 IN TXT \"txtvers=1\" \"pk=abc\"",
		"laptop.alice.members.example.com. 60 IN AAAA fd12:3456:789a:bcde:211:22ff:fe33:4455",
		"_autotunnel._udp.alice.members.example.com. 60 IN PTR laptop.alice.members.example.com.",
		"www.alice.members.example.com. 60 IN CNAME laptop.alice.members.example.com.",
		"out.alice.members.example.com. 60 IN CNAME example.net.",
	)
	soa := func(serial string) string {
		return "members.example.com. 30 IN SOA ns1.members.example.com. hostmaster.members.example.com. " + serial + " 3600 600 86400 30"
	}
	serial, _ := b.store.Serial()
	ser := strconv.FormatUint(uint64(serial), 10)
	cases := []test.Case{
		{Qname: "members.example.com.", Qtype: dns.TypeSOA, Answer: []dns.RR{test.SOA("members.example.com. 60 IN SOA ns1.members.example.com. hostmaster.members.example.com. " + ser + " 3600 600 86400 30")}},
		{Qname: "members.example.com.", Qtype: dns.TypeNS,
			Answer: []dns.RR{test.NS("members.example.com. 60 IN NS ns1.members.example.com.")},
			Extra:  []dns.RR{test.A("ns1.members.example.com. 60 IN A 192.0.2.53")}},
		{Qname: "ns1.members.example.com.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("ns1.members.example.com. 60 IN A 192.0.2.53")}},
		{Qname: "_AUTOTUNNEL._udp.laptop.ALICE.members.example.com.", Qtype: dns.TypeSRV,
			Answer: []dns.RR{test.SRV("_autotunnel._udp.laptop.alice.members.example.com. 60 IN SRV 0 0 4500 AutoTunnel-02-11-22-FF-FE-33-44-55.alice.members.example.com.")},
			Extra: []dns.RR{
				test.A("AutoTunnel-02-11-22-FF-FE-33-44-55.alice.members.example.com. 60 IN A 198.51.100.7"),
				test.AAAA("AutoTunnel-02-11-22-FF-FE-33-44-55.alice.members.example.com. 60 IN AAAA fd12:3456:789a:bcde:211:22ff:fe33:4455"),
			}},
		{Qname: "autotunnel-02-11-22-ff-fe-33-44-55.alice.members.example.com.", Qtype: dns.TypeTXT,
			Answer: []dns.RR{test.TXT("AutoTunnel-02-11-22-FF-FE-33-44-55.alice.members.example.com. 60 IN TXT \"txtvers=1\" \"pk=abc\"")}},
		{Qname: "_autotunnel._udp.alice.members.example.com.", Qtype: dns.TypePTR,
			Answer: []dns.RR{test.PTR("_autotunnel._udp.alice.members.example.com. 60 IN PTR laptop.alice.members.example.com.")}},
		// A CNAME inside the zone is followed (SortAndCheck sorts by name).
		{Qname: "www.alice.members.example.com.", Qtype: dns.TypeAAAA, Answer: []dns.RR{
			test.AAAA("laptop.alice.members.example.com. 60 IN AAAA fd12:3456:789a:bcde:211:22ff:fe33:4455"),
			test.CNAME("www.alice.members.example.com. 60 IN CNAME laptop.alice.members.example.com."),
		}},
		{Qname: "out.alice.members.example.com.", Qtype: dns.TypeA, Answer: []dns.RR{test.CNAME("out.alice.members.example.com. 60 IN CNAME example.net.")}},
		// NODATA: the name exists, the type does not.
		{Qname: "laptop.alice.members.example.com.", Qtype: dns.TypeA, Ns: []dns.RR{test.SOA(soa(ser))}},
		// An empty non-terminal is NODATA too.
		{Qname: "_udp.laptop.alice.members.example.com.", Qtype: dns.TypeA, Ns: []dns.RR{test.SOA(soa(ser))}},
		{Qname: "alice.members.example.com.", Qtype: dns.TypeA, Ns: []dns.RR{test.SOA(soa(ser))}},
		// NXDOMAIN.
		{Qname: "desktop.alice.members.example.com.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{test.SOA(soa(ser))}},
		{Qname: "bob.members.example.com.", Qtype: dns.TypeAAAA, Rcode: dns.RcodeNameError, Ns: []dns.RR{test.SOA(soa(ser))}},
	}
	for _, tc := range cases {
		t.Run(dns.TypeToString[tc.Qtype]+" "+tc.Qname, func(t *testing.T) {
			w := dnstest.NewRecorder(&test.ResponseWriter{})
			if _, err := b.ServeDNS(context.Background(), w, tc.Msg()); err != nil {
				t.Fatal(err)
			}
			if !w.Msg.Authoritative {
				t.Error("answer is not authoritative")
			}
			if err := test.SortAndCheck(w.Msg, tc); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestOtherZonesPassOn(t *testing.T) {
	b := newTestBtmm(t)
	w := dnstest.NewRecorder(&test.ResponseWriter{})
	m := new(dns.Msg).SetQuestion("example.org.", dns.TypeA)
	if rcode, _ := b.ServeDNS(context.Background(), w, m); rcode != dns.RcodeRefused {
		t.Fatalf("a query outside the zone got rcode %d, want the next plugin's REFUSED", rcode)
	}
}

func TestUpdateWithoutTsigUpdateIsNotImplemented(t *testing.T) {
	b := newTestBtmm(t)
	m := new(dns.Msg).SetUpdate(zone)
	rcode, _ := b.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{}), m)
	if rcode != dns.RcodeNotImplemented {
		t.Fatalf("UPDATE reaching btmm got rcode %d, want NOTIMP", rcode)
	}
}

// TestUserZones: each user's domain answers its own SOA and NS in the
// Answer section, and negative answers below it carry its SOA; names
// outside every user's domain get the apex's.
func TestUserZones(t *testing.T) {
	b := newTestBtmm(t, "laptop.alice.members.example.com. 60 IN AAAA fd00::1")
	b.keys = map[string]keyfile.Key{"alice.members.example.com.": {Name: "alice.members.example.com."}}
	ask := func(name string, qtype uint16) *dns.Msg {
		m := new(dns.Msg)
		rcode, err := b.Answer(m, name, qtype)
		if err != nil {
			t.Fatal(err)
		}
		m.Rcode = rcode
		return m
	}
	m := ask("alice.members.example.com.", dns.TypeSOA)
	if len(m.Answer) != 1 || m.Answer[0].Header().Name != "alice.members.example.com." || m.Rcode != dns.RcodeSuccess {
		t.Errorf("SOA at alice's domain: %v", m)
	}
	serial, _ := b.store.Serial()
	if soa, ok := m.Answer[0].(*dns.SOA); !ok || soa.Serial != serial {
		t.Errorf("alice's SOA %v, want the store's serial %d", m.Answer, serial)
	}
	if m := ask("alice.members.example.com.", dns.TypeNS); len(m.Answer) != 1 || m.Answer[0].(*dns.NS).Ns != "ns1."+zone || len(m.Extra) != 1 {
		t.Errorf("NS at alice's domain: %v, want ns1 with its address", m)
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		soa   string
	}{
		{"nosuch.alice.members.example.com.", dns.TypeA, dns.RcodeNameError, "alice.members.example.com."},
		{"laptop.alice.members.example.com.", dns.TypeA, dns.RcodeSuccess, "alice.members.example.com."},
		{"laptop.alice.members.example.com.", dns.TypeSOA, dns.RcodeSuccess, "alice.members.example.com."},
		{"a.b.laptop.alice.members.example.com.", dns.TypeSOA, dns.RcodeNameError, "alice.members.example.com."},
		{"alice.members.example.com.", dns.TypeA, dns.RcodeSuccess, "alice.members.example.com."},
		{"bob.members.example.com.", dns.TypeSOA, dns.RcodeNameError, zone},
		{"x.alicia.members.example.com.", dns.TypeA, dns.RcodeNameError, zone},
	} {
		m := ask(tc.name, tc.qtype)
		if m.Rcode != tc.rcode || len(m.Answer) != 0 || len(m.Ns) != 1 || m.Ns[0].Header().Name != tc.soa || m.Ns[0].Header().Rrtype != dns.TypeSOA {
			t.Errorf("%s %s: %v; want %s with the SOA of %s", tc.name, dns.TypeToString[tc.qtype], m, dns.RcodeToString[tc.rcode], tc.soa)
		}
	}
}

// TestDomainEnumeration: each user's domain answers RFC 6763 §11's
// browse and registration domain PTRs with itself, so that a DNS-SD
// client told its domain browses and registers there; other names of the
// kind are not made up.
func TestDomainEnumeration(t *testing.T) {
	b := newTestBtmm(t)
	b.keys = map[string]keyfile.Key{"alice." + zone: {Name: "alice." + zone, Algorithm: dns.HmacSHA256, Secret: "c2VjcmV0"}}
	for _, l := range []string{"b", "db", "r", "dr", "lb"} {
		m := new(dns.Msg)
		name := l + "._dns-sd._udp.alice." + zone
		if rcode, err := b.Answer(m, name, dns.TypePTR); err != nil || rcode != dns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].(*dns.PTR).Ptr != "alice."+zone {
			t.Errorf("%s PTR: %s %v %v", name, dns.RcodeToString[rcode], m.Answer, err)
		}
	}
	for _, name := range []string{"b._dns-sd._udp.bob." + zone, "x._dns-sd._udp.alice." + zone, "b._dns-sd._udp.laptop.alice." + zone, "b._dns-sd._udp." + zone} {
		m := new(dns.Msg)
		if _, err := b.Answer(m, name, dns.TypePTR); err != nil || len(m.Answer) != 0 {
			t.Errorf("%s PTR: %v %v, want none", name, m.Answer, err)
		}
	}
}
