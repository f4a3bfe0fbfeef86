package srvdiscovery

import (
	"context"
	"strconv"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/btmm"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
	"github.com/openbtmm/btmm/plugin/pkg/store/storetest"
)

const zone = "members.example.com."

// newZone returns a btmm for the zone over a new store holding records,
// answering REFUSED for other zones.
func newZone(t *testing.T, records ...string) *btmm.Btmm {
	t.Helper()
	s := storetest.New(t, zone, boltstore.Options{}, records...)
	b := btmm.NewForTest(zone, s)
	b.Next = test.NextHandler(dns.RcodeRefused, nil)
	return b
}

// newPlugin parses corefile and puts the plugin in front of b, as setup
// and OnStartup would.
func newPlugin(t *testing.T, corefile string, b *btmm.Btmm) *SrvDiscovery {
	t.Helper()
	s, err := parse(caddy.NewTestController("dns", corefile))
	if err != nil {
		t.Fatal(err)
	}
	s.zone = b
	s.Next = b
	return s
}

// counter counts the requests passed on to the next handler.
type counter struct {
	plugin.Handler
	n int
}

func (c *counter) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	c.n++
	return c.Handler.ServeDNS(ctx, w, r)
}

func TestServeDNS(t *testing.T) {
	b := newZone(t,
		"ns1.members.example.com. 60 IN A 192.0.2.53",
		"ns1.members.example.com. 60 IN AAAA 2001:db8::53",
		"ns2.members.example.com. 60 IN A 192.0.2.54",
		"ns2.members.example.com. 60 IN TXT \"not an address\"",
		"laptop.alice.members.example.com. 60 IN AAAA fd00::1",
		"_dns-update._udp.host.alice.members.example.com. 60 IN SRV 0 0 53 elsewhere.example.net.",
		"_dns-llq-tls._tcp.alice.members.example.com. 60 IN TXT \"alice's own\"",
	)
	s := newPlugin(t, `srv-discovery {
		update ns1.members.example.com. 853 tls
		update ns2.members.example.com. 853 tls
		update ns1.members.example.com. 53
		llq    llq.example.net. 5352
		push   push.example.net. 853
	}`, b)

	serial, _ := b.Store().Serial()
	soa := []dns.RR{test.SOA("members.example.com. 30 IN SOA members.example.com. hostmaster.members.example.com. " +
		strconv.FormatUint(uint64(serial), 10) + " 3600 600 86400 30")}
	srv := func(name string, port int, target string) []dns.RR {
		return []dns.RR{test.SRV(name + " 60 IN SRV 0 0 " + strconv.Itoa(port) + " " + target)}
	}
	ns1Addrs := []dns.RR{
		test.A("ns1.members.example.com. 60 IN A 192.0.2.53"),
		test.AAAA("ns1.members.example.com. 60 IN AAAA 2001:db8::53"),
	}
	ns2Addrs := []dns.RR{test.A("ns2.members.example.com. 60 IN A 192.0.2.54")}
	// The TLS update servers are two: who gets which is Choose's to say.
	tlsTargets := []Target{{"ns1.members.example.com.", 853}, {"ns2.members.example.com.", 853}}
	chosen := make(map[string]bool)
	tlsFor := func(name, user string) test.Case {
		tc := test.Case{Qname: name, Qtype: dns.TypeSRV, Extra: ns1Addrs}
		target := Choose(user, tlsTargets).Name
		chosen[target] = true
		tc.Answer = srv(name, 853, target)
		if target == "ns2.members.example.com." {
			tc.Extra = ns2Addrs
		}
		return tc
	}

	tests := []struct {
		test.Case
		passOn bool
	}{
		// The apex and a user, with the in-zone target's addresses.
		{Case: test.Case{Qname: "_dns-update._udp.members.example.com.", Qtype: dns.TypeSRV,
			Answer: srv("_dns-update._udp.members.example.com.", 53, "ns1.members.example.com."), Extra: ns1Addrs}},
		{Case: test.Case{Qname: "_dns-update._udp.alice.members.example.com.", Qtype: dns.TypeSRV,
			Answer: srv("_dns-update._udp.alice.members.example.com.", 53, "ns1.members.example.com."), Extra: ns1Addrs}},
		// Users that have no records get it too.
		{Case: test.Case{Qname: "_dns-update._udp.nobody.members.example.com.", Qtype: dns.TypeSRV,
			Answer: srv("_dns-update._udp.nobody.members.example.com.", 53, "ns1.members.example.com."), Extra: ns1Addrs}},
		// Both spellings of the TLS service.
		{Case: tlsFor("_dns-update-tls._tcp.members.example.com.", "")},
		{Case: tlsFor("_dns-update-tls._udp.members.example.com.", "")},
		{Case: tlsFor("_dns-update-tls._tcp.alice.members.example.com.", "alice")},
		{Case: tlsFor("_dns-update-tls._udp.alice.members.example.com.", "alice")},
		{Case: tlsFor("_dns-update-tls._tcp.bob.members.example.com.", "bob")},
		{Case: tlsFor("_dns-update-tls._tcp.carol.members.example.com.", "carol")},
		{Case: tlsFor("_dns-update-tls._tcp.dave.members.example.com.", "dave")},
		// Another case: the same choice, the name as asked.
		{Case: tlsFor("_DNS-Update-TLS._TCP.ALICE.Members.Example.COM.", "alice")},
		{Case: test.Case{Qname: "_DNS-LLQ._UDP.Members.Example.Com.", Qtype: dns.TypeSRV,
			Answer: srv("_DNS-LLQ._UDP.Members.Example.Com.", 5352, "llq.example.net.")}},
		// A target outside the zone: no addresses from here.
		{Case: test.Case{Qname: "_dns-push-tls._tcp.alice.members.example.com.", Qtype: dns.TypeSRV,
			Answer: srv("_dns-push-tls._tcp.alice.members.example.com.", 853, "push.example.net.")}},
		{Case: test.Case{Qname: "_dns-llq._udp.alice.members.example.com.", Qtype: dns.TypeSRV,
			Answer: srv("_dns-llq._udp.alice.members.example.com.", 5352, "llq.example.net.")}},
		// A user label that looks like a service label is a user label.
		{Case: test.Case{Qname: "_dns-llq._udp._tcp.members.example.com.", Qtype: dns.TypeSRV,
			Answer: srv("_dns-llq._udp._tcp.members.example.com.", 5352, "llq.example.net.")}},

		// Services not configured: btmm answers, with what the user stored
		// there if anything.
		{passOn: true, Case: test.Case{Qname: "_dns-llq-tls._tcp.members.example.com.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soa}},
		{passOn: true, Case: test.Case{Qname: "_dns-llq-tls._udp.bob.members.example.com.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soa}},
		{passOn: true, Case: test.Case{Qname: "_dns-llq-tls._tcp.alice.members.example.com.", Qtype: dns.TypeSRV, Ns: soa}},
		// Names no client asks for.
		{passOn: true, Case: test.Case{Qname: "_dns-update._tcp.alice.members.example.com.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soa}},
		{passOn: true, Case: test.Case{Qname: "_dns-llq._tcp.members.example.com.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soa}},
		{passOn: true, Case: test.Case{Qname: "_dns-query-tls._tcp.alice.members.example.com.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soa}},
		{passOn: true, Case: test.Case{Qname: "_udp.alice.members.example.com.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soa}},
		{passOn: true, Case: test.Case{Qname: "alice.members.example.com.", Qtype: dns.TypeSRV, Ns: soa}},
		// Deeper than a user: btmm answers.
		{passOn: true, Case: test.Case{Qname: "_dns-update._udp.host.alice.members.example.com.", Qtype: dns.TypeSRV,
			Answer: srv("_dns-update._udp.host.alice.members.example.com.", 53, "elsewhere.example.net.")}},
		{passOn: true, Case: test.Case{Qname: "_dns-update._udp.laptop.alice.members.example.com.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soa}},
		// Other types at the names answered.
		{passOn: true, Case: test.Case{Qname: "_dns-update._udp.alice.members.example.com.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa}},
		{passOn: true, Case: test.Case{Qname: "_dns-update._udp.members.example.com.", Qtype: dns.TypeTXT, Rcode: dns.RcodeNameError, Ns: soa}},
		{passOn: true, Case: test.Case{Qname: "_dns-update._udp.members.example.com.", Qtype: dns.TypeANY, Rcode: dns.RcodeNameError, Ns: soa}},
		// Other zones.
		{passOn: true, Case: test.Case{Qname: "_dns-update._udp.example.org.", Qtype: dns.TypeSRV, Rcode: dns.RcodeRefused}},
		{passOn: true, Case: test.Case{Qname: "_dns-update._udp.alice.example.com.", Qtype: dns.TypeSRV, Rcode: dns.RcodeRefused}},
	}
	if len(chosen) != 2 {
		t.Fatalf("the users of the table all go to %v: choose others", chosen)
	}
	for _, tc := range tests {
		t.Run(dns.TypeToString[tc.Qtype]+" "+tc.Qname, func(t *testing.T) {
			next := &counter{Handler: b}
			s.Next = next
			w := dnstest.NewRecorder(&test.ResponseWriter{})
			rcode, err := s.ServeDNS(context.Background(), w, tc.Msg())
			if err != nil {
				t.Fatal(err)
			}
			if passedOn := next.n > 0; passedOn != tc.passOn {
				t.Fatalf("passed on: %t, want %t", passedOn, tc.passOn)
			}
			if tc.Rcode == dns.RcodeRefused {
				// test.NextHandler writes nothing.
				if rcode != dns.RcodeRefused {
					t.Errorf("rcode %d, want the next plugin's REFUSED", rcode)
				}
				return
			}
			if w.Msg == nil {
				t.Fatal("no reply written")
			}
			if !w.Msg.Authoritative {
				t.Error("answer is not authoritative")
			}
			if err := test.SortAndCheck(w.Msg, tc.Case); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestPassOnNonQueries: other classes and opcodes are not for this plugin.
func TestPassOnNonQueries(t *testing.T) {
	b := newZone(t)
	s := newPlugin(t, "srv-discovery {\n update ns1.members.example.com. 53\n}", b)
	chaos := new(dns.Msg).SetQuestion("_dns-update._udp.members.example.com.", dns.TypeSRV)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	notify := new(dns.Msg).SetNotify("_dns-update._udp.members.example.com.")
	notify.Question[0].Qtype = dns.TypeSRV
	for _, m := range []*dns.Msg{chaos, notify} {
		next := &counter{Handler: b}
		s.Next = next
		s.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{}), m)
		if next.n != 1 {
			t.Errorf("%s was not passed on", m.Question[0].String())
		}
	}
}

// TestAliasTargetHasNoGlue: a target that is a CNAME (which RFC 2782 forbids)
// is answered, without the addresses of what it points to.
func TestAliasTargetHasNoGlue(t *testing.T) {
	b := newZone(t,
		"ns1.members.example.com. 60 IN A 192.0.2.53",
		"alias.members.example.com. 60 IN CNAME ns1.members.example.com.",
	)
	s := newPlugin(t, "srv-discovery {\n llq alias.members.example.com. 5352 tls\n}", b)
	tc := test.Case{Qname: "_dns-llq-tls._tcp.alice.members.example.com.", Qtype: dns.TypeSRV,
		Answer: []dns.RR{test.SRV("_dns-llq-tls._tcp.alice.members.example.com. 60 IN SRV 0 0 5352 alias.members.example.com.")}}
	w := dnstest.NewRecorder(&test.ResponseWriter{})
	if _, err := s.ServeDNS(context.Background(), w, tc.Msg()); err != nil {
		t.Fatal(err)
	}
	if err := test.SortAndCheck(w.Msg, tc); err != nil {
		t.Error(err)
	}
}

// TestSameAnswerFromAFreshInstance: another instance, from the Corefile with
// its lines in another order (a restart after an edit), sends every user to
// the same target.
func TestSameAnswerFromAFreshInstance(t *testing.T) {
	b := newZone(t)
	one := newPlugin(t, `srv-discovery {
		llq ns1.members.example.com. 5352
		llq ns2.members.example.com. 5352
		llq ns3.members.example.com. 5352
	}`, b)
	two := newPlugin(t, `srv-discovery {
		llq NS3.members.example.com 5352
		llq ns1.members.example.com. 5352
		llq ns2.members.example.com. 5352
	}`, b)
	targets := make(map[string]bool)
	for i := range 200 {
		name := "_dns-llq._udp.user" + strconv.Itoa(i) + ".members.example.com."
		var got [3]string
		for j, s := range []*SrvDiscovery{one, one, two} {
			w := dnstest.NewRecorder(&test.ResponseWriter{})
			if _, err := s.ServeDNS(context.Background(), w, new(dns.Msg).SetQuestion(name, dns.TypeSRV)); err != nil {
				t.Fatal(err)
			}
			if len(w.Msg.Answer) != 1 {
				t.Fatalf("%s: %v", name, w.Msg)
			}
			got[j] = w.Msg.Answer[0].(*dns.SRV).Target
		}
		if got[0] != got[1] || got[0] != got[2] {
			t.Fatalf("%s: targets %q, want the same every time", name, got)
		}
		targets[got[0]] = true
	}
	if len(targets) != 3 {
		t.Errorf("200 users went to %d targets, want all 3", len(targets))
	}
}
