package endpoint

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

const user = "alice.members.example.com."

func TestRoundTrip(t *testing.T) {
	for _, ep := range []string{"198.51.100.7:61234", "[2001:db8::7]:4500"} {
		want := netip.MustParseAddrPort(ep)
		q := Query(user)
		m := new(dns.Msg).SetReply(q)
		Reply(m, q.Question[0].Name, want)
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			t.Fatal(err)
		}
		got, err := Parse(r, user)
		if err != nil || got != want {
			t.Errorf("%s came back as %v, %v", ep, got, err)
		}
		if r.Answer[0].Header().Ttl != 0 || !r.Authoritative {
			t.Errorf("the reply must not be cached and is authoritative: %v", r)
		}
	}
	if u, ok := User("_BTMM-endpoint._udp.Alice.members.example.com"); !ok || u != user {
		t.Errorf("User = %q, %v", u, ok)
	}
	if _, ok := User("_btmm-endpoint._udp."); ok {
		t.Error("a name with no user is an endpoint question")
	}
}

func TestParseRefuses(t *testing.T) {
	good := func() *dns.Msg {
		m := new(dns.Msg).SetReply(Query(user))
		Reply(m, Name(user), netip.MustParseAddrPort("198.51.100.7:61234"))
		return m
	}
	for what, mod := range map[string]func(m *dns.Msg){
		"an error":            func(m *dns.Msg) { m.Rcode = dns.RcodeRefused },
		"no SRV":              func(m *dns.Msg) { m.Answer = nil },
		"another user's name": func(m *dns.Msg) { m.Answer[0].(*dns.SRV).Hdr.Name = Name("bob.members.example.com.") },
		"another target":      func(m *dns.Msg) { m.Answer[0].(*dns.SRV).Target = "elsewhere.example." },
		"port 0":              func(m *dns.Msg) { m.Answer[0].(*dns.SRV).Port = 0 },
		"no address":          func(m *dns.Msg) { m.Extra = nil },
		"two addresses":       func(m *dns.Msg) { m.Extra = append(m.Extra, m.Extra[0]) },
		"two SRVs":            func(m *dns.Msg) { m.Answer = append(m.Answer, m.Answer[0]) },
	} {
		m := good()
		mod(m)
		if ep, err := Parse(m, user); err == nil {
			t.Errorf("%s: parsed as %v", what, ep)
		}
	}
}

// FuzzParse: whatever reply arrives, Parse either refuses it or returns
// an endpoint whose reply parses back to the same endpoint.
func FuzzParse(f *testing.F) {
	m := new(dns.Msg).SetReply(Query(user))
	Reply(m, Name(user), netip.MustParseAddrPort("198.51.100.7:61234"))
	b, _ := m.Pack()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		r := new(dns.Msg)
		if r.Unpack(b) != nil {
			return
		}
		ep, err := Parse(r, user)
		if err != nil {
			return
		}
		if !ep.IsValid() || ep.Port() == 0 {
			t.Fatalf("Parse returned %v", ep)
		}
		again := new(dns.Msg).SetReply(Query(user))
		Reply(again, Name(user), ep)
		if got, err := Parse(again, user); err != nil || got != ep {
			t.Fatalf("%v did not survive a round trip: %v %v", ep, got, err)
		}
	})
}
