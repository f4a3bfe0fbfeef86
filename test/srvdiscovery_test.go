package test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/openbtmm/btmm/plugin/srvdiscovery"
	"github.com/openbtmm/btmm/test/coredns"
)

// srvDiscoveryCorefile serves the members zone with three in-zone name
// servers (ns1-ns3, at 127.0.0.1-3) and srv-discovery's lines, in the
// order given, spreading the users over them.
func srvDiscoveryCorefile(lines []string) string {
	return fmt.Sprintf(`members.example.com:{{PORT}} {
	btmm members.example.com {
		keys users.keys
		store members.db
		ns ns1.members.example.com. 127.0.0.1
		ns ns2.members.example.com. 127.0.0.2 ::2
		ns ns3.members.example.com. 127.0.0.3
	}
	ddul-lease
	tsig-update
	srv-discovery {
		%s
	}
	errors
}
`, strings.Join(lines, "\n\t\t"))
}

// digResult is what dig printed, records as space-separated fields.
type digResult struct {
	out                string
	status             string
	aa                 bool
	answer, additional []string
}

// digSRV asks s for name's SRV records with dig.
func digSRV(t *testing.T, s *coredns.Server, name string) digResult {
	t.Helper()
	dig := needTool(t, "dig", "bind9-dnsutils")
	out, err := run(t, "", dig, "@127.0.0.1", "-p", itoa(s.Port), "+norec", "+nocookie", name, "SRV")
	if err != nil {
		t.Fatalf("dig %s SRV: %v\n%s", name, err, out)
	}
	r := digResult{out: out}
	var section *[]string
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		switch {
		case strings.Contains(line, "status: "):
			r.status = strings.TrimSuffix(strings.Fields(line[strings.Index(line, "status: "):])[1], ",")
		case strings.HasPrefix(line, ";; flags:"):
			flags, _, _ := strings.Cut(strings.TrimPrefix(line, ";; flags:"), ";")
			r.aa = slices.Contains(strings.Fields(flags), "aa")
		case line == ";; ANSWER SECTION:":
			section = &r.answer
		case line == ";; ADDITIONAL SECTION:":
			section = &r.additional
		case line == "" || strings.HasPrefix(line, ";"):
			section = nil
		case section != nil:
			*section = append(*section, strings.Join(strings.Fields(line), " "))
		}
	}
	return r
}

// TestSrvDiscoverySpreadsUsers: dig shows each user the update and LLQ
// servers that srvdiscovery.Choose picks for that user, at the user's
// domain and at the apex, in every spelling, with the in-zone target's
// addresses; a fresh server from the Corefile with its lines reordered
// answers the same.
func TestSrvDiscoverySpreadsUsers(t *testing.T) {
	const tlsPort, llqPort = 853, 5352
	ns := func(i int) string { return fmt.Sprintf("ns%d.members.example.com.", i) }
	updateTLS := []srvdiscovery.Target{{Name: ns(1), Port: tlsPort}, {Name: ns(2), Port: tlsPort}, {Name: ns(3), Port: tlsPort}}
	llq := []srvdiscovery.Target{{Name: ns(1), Port: llqPort}, {Name: ns(2), Port: llqPort}, {Name: "llq.example.net.", Port: llqPort}}
	var lines []string
	for _, t := range updateTLS {
		lines = append(lines, fmt.Sprintf("update %s %d tls", t.Name, t.Port))
	}
	for _, t := range llq {
		lines = append(lines, fmt.Sprintf("llq    %s %d", t.Name, t.Port))
	}
	addrs := map[string][]string{
		ns(1): {ns(1) + " 60 IN A 127.0.0.1"},
		ns(2): {ns(2) + " 60 IN A 127.0.0.2", ns(2) + " 60 IN AAAA ::2"},
		ns(3): {ns(3) + " 60 IN A 127.0.0.3"},
	}

	users := []string{"", "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}
	spread := make(map[string][]string) // target -> users
	for _, u := range users {
		target := srvdiscovery.Choose(u, updateTLS).Name
		spread[target] = append(spread[target], u)
	}
	if len(spread) != 3 {
		t.Fatalf("the test's users do not use all three servers: %v", spread)
	}
	t.Logf("update servers by user: %v", spread)

	domain := func(u string) string {
		if u == "" {
			return zone
		}
		return u + "." + zone
	}
	check := func(t *testing.T, s *coredns.Server) map[string]string {
		got := make(map[string]string) // name -> answer
		for _, u := range users {
			want := srvdiscovery.Choose(u, updateTLS)
			for _, name := range []string{"_dns-update-tls._tcp." + domain(u), "_dns-update-tls._udp." + domain(u), strings.ToUpper("_dns-update-tls._tcp." + domain(u))} {
				r := digSRV(t, s, name)
				wantAnswer := fmt.Sprintf("%s 60 IN SRV 0 0 %d %s", name, want.Port, want.Name)
				if r.status != "NOERROR" || !r.aa || !slices.Equal(r.answer, []string{wantAnswer}) {
					t.Fatalf("%s: want the one answer %q, authoritative:\n%s", name, wantAnswer, r.out)
				}
				if !slices.Equal(r.additional, addrs[want.Name]) {
					t.Errorf("%s: additional %q, want %q:\n%s", name, r.additional, addrs[want.Name], r.out)
				}
				got[name] = r.answer[0]
				if u == "alice" && strings.HasPrefix(name, "_dns-update-tls._tcp") {
					t.Logf("dig %s SRV:\n%s", name, r.out)
				}
			}

			// LLQ: of the hosts that offer both, the same as for
			// updates; no addresses for the target outside the zone.
			name := "_dns-llq._udp." + domain(u)
			wantLLQ := srvdiscovery.Choose(u, llq)
			both := func(n string) bool { return n == ns(1) || n == ns(2) }
			if both(want.Name) && both(wantLLQ.Name) && wantLLQ.Name != want.Name {
				t.Errorf("user %q updates on %s but has LLQ on %s", u, want.Name, wantLLQ.Name)
			}
			r := digSRV(t, s, name)
			wantAnswer := fmt.Sprintf("%s 60 IN SRV 0 0 %d %s", name, wantLLQ.Port, wantLLQ.Name)
			if r.status != "NOERROR" || !r.aa || !slices.Equal(r.answer, []string{wantAnswer}) ||
				!slices.Equal(r.additional, addrs[wantLLQ.Name]) {
				t.Fatalf("%s: want %q with %q:\n%s", name, wantAnswer, addrs[wantLLQ.Name], r.out)
			}
			got[name] = r.answer[0]

			// Not configured: btmm's NXDOMAIN.
			for _, name := range []string{"_dns-llq-tls._tcp." + domain(u), "_dns-update._udp." + domain(u)} {
				if r := digSRV(t, s, name); r.status != "NXDOMAIN" || len(r.answer) != 0 {
					t.Errorf("%s: want NXDOMAIN:\n%s", name, r.out)
				}
			}
		}
		// Deeper than a user: btmm's.
		if r := digSRV(t, s, "_dns-update-tls._tcp.laptop.alice."+zone); r.status != "NXDOMAIN" {
			t.Errorf("a host's name: want NXDOMAIN:\n%s", r.out)
		}
		return got
	}

	s := startServer(t, srvDiscoveryCorefile(lines), alice)
	first := check(t, s)
	// A signed query gets a signed answer (tsig-update comes first).
	dig := needTool(t, "dig", "bind9-dnsutils")
	name := "_dns-update-tls._tcp." + alice.name
	out, err := run(t, "", dig, "@127.0.0.1", "-p", itoa(s.Port), "-y", alice.ySpec(), "+norec", name, "SRV")
	if want := srvdiscovery.Choose("alice", updateTLS); err != nil || !strings.Contains(strings.Join(strings.Fields(out), " "), "IN SRV 0 0 853 "+want.Name) ||
		!strings.Contains(out, "TSIG") || strings.Contains(out, "failure") {
		t.Errorf("signed dig: want %v, with a good TSIG: %v\n%s", want, err, out)
	}
	s.Kill()

	slices.Reverse(lines)
	s = startServer(t, srvDiscoveryCorefile(lines), alice)
	if second := check(t, s); !maps.Equal(second, first) {
		t.Fatalf("answers after the restart:\n%v\nbefore:\n%v", second, first)
	}
}

// TestNeedsBtmm: a directive that works on the members zone, in a server
// block without btmm, stops the start with a message that says so.
func TestNeedsBtmm(t *testing.T) {
	for _, tc := range []struct{ directive, block string }{
		{"srv-discovery", "srv-discovery {\n\t\tupdate ns1.members.example.com. 53\n\t}"},
		{"tsig-update", "tsig-update {\n\t\tudp 127.0.0.1:{{UPDATEPORT}}\n\t}"},
		{"llq", "llq {\n\t\tudp 127.0.0.1:{{LLQPORT}}\n\t\ttcp off\n\t}"},
	} {
		t.Run(tc.directive, func(t *testing.T) {
			cf := "members.example.com:{{PORT}} {\n\t" + tc.block + "\n\terrors\n}\n"
			out := coredns.New(t, t.TempDir(), cf).StartFails()
			if want := tc.directive + " needs the btmm directive in the same server block"; !strings.Contains(out, want) {
				t.Fatalf("coredns with %s and no btmm: %s\nwant %q", tc.directive, out, want)
			}
		})
	}
}
