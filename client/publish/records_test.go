package publish

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// laptop is alice's laptop, as the daemon would describe it.
func laptop() Host {
	return Host{
		Zone:   "members.example.com", // not fully qualified: the names must be anyway
		User:   "alice",
		Name:   "laptop",
		Label:  "AutoTunnel-02-11-22-FF-FE-33-44-55",
		ULA:    netip.MustParseAddr("fd5e:1b2c:3d4e:1:211:22ff:fe33:4455"),
		Public: netip.MustParseAddrPort("203.0.113.7:4500"),
		Key:    "q1JKBZ7Cv4Y0tOG4pK7t5f1dOtoc5Bn0nB4i2R0x1mE=",
		TTL:    60,
	}
}

// The six records of RFC 6281 §3 and §5.2, as Records documents them.
func TestRecords(t *testing.T) {
	h := laptop()
	recs, err := h.Records()
	if err != nil {
		t.Fatal(err)
	}
	const (
		host  = "laptop.alice.members.example.com."
		label = "AutoTunnel-02-11-22-FF-FE-33-44-55.alice.members.example.com."
		srv   = "_autotunnel._udp.laptop.alice.members.example.com."
		list  = "_autotunnel._udp.alice.members.example.com."
		ula   = "fd5e:1b2c:3d4e:1:211:22ff:fe33:4455"
	)
	want := []string{
		srv + "\t60\tIN\tSRV\t0 0 4500 " + label,
		label + "\t60\tIN\tA\t203.0.113.7",
		label + "\t60\tIN\tAAAA\t" + ula,
		label + "\t60\tIN\tTXT\t\"txtvers=1\" \"pk=q1JKBZ7Cv4Y0tOG4pK7t5f1dOtoc5Bn0nB4i2R0x1mE=\" \"ciphers=aes256gcm,chacha20poly1305\"",
		host + "\t60\tIN\tAAAA\t" + ula,
		list + "\t60\tIN\tPTR\t" + host,
	}
	var got []string
	for _, rr := range recs {
		got = append(got, rr.String())
		// Every record must survive the wire as it is.
		if _, err := dns.NewRR(rr.String()); err != nil {
			t.Errorf("%v: %v", rr, err)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("records:\n%s\nwant:\n%s", join(got), join(want))
	}

	// The names the package exports agree with the records.
	for _, tt := range []struct{ got, want string }{
		{h.HostName(), host}, {h.LabelName(), label}, {h.SRVName(), srv}, {h.ListName(), list},
	} {
		if tt.got != tt.want {
			t.Errorf("name %q, want %q", tt.got, tt.want)
		}
	}
}

func join(ss []string) string {
	out := ""
	for _, s := range ss {
		out += "\t" + s + "\n"
	}
	return out
}

// The TTL is the host's, on every record.
func TestRecordsTTL(t *testing.T) {
	h := laptop()
	h.TTL = 7
	recs, err := h.Records()
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range recs {
		if rr.Header().Ttl != 7 || rr.Header().Class != dns.ClassINET {
			t.Errorf("%v: want class IN, TTL 7", rr)
		}
	}
}

// A host with a global IPv6 address publishes it as a second AAAA of its
// label, the IPv6 port in port6= when it differs from the SRV's; with
// IPv6 alone, the SRV carries the IPv6 port and there is no A record.
// Endpoints reads back what Records wrote.
func TestRecordsIPv6(t *testing.T) {
	const (
		label = "AutoTunnel-02-11-22-FF-FE-33-44-55.alice.members.example.com."
		ula   = "fd5e:1b2c:3d4e:1:211:22ff:fe33:4455"
	)
	for _, tt := range []struct {
		name      string
		v4, v6    string
		srv, port string
		txtPort6  string
	}{
		{"both, ports differ", "203.0.113.7:4500", "[2001:db8:1:1::10]:61000", "4500", "", `"port6=61000"`},
		{"both, one port", "203.0.113.7:4500", "[2001:db8:1:1::10]:4500", "4500", "", ""},
		{"IPv6 alone", "", "[2001:db8:1:1::10]:61000", "61000", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := laptop()
			h.Public, h.Public6 = netip.AddrPort{}, netip.MustParseAddrPort(tt.v6)
			if tt.v4 != "" {
				h.Public = netip.MustParseAddrPort(tt.v4)
			}
			recs, err := h.Records()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			var port uint16
			var label_ []dns.RR
			for _, rr := range recs {
				got = append(got, rr.String())
				if s, ok := rr.(*dns.SRV); ok {
					port = s.Port
				}
				if rr.Header().Name == label {
					label_ = append(label_, rr)
				}
			}
			all := join(got)
			for _, w := range []string{
				"SRV\t0 0 " + tt.srv + " " + label,
				label + "\t60\tIN\tAAAA\t" + ula,
				label + "\t60\tIN\tAAAA\t" + h.Public6.Addr().String(),
			} {
				if !strings.Contains(all, w) {
					t.Errorf("no %q in\n%s", w, all)
				}
			}
			if hasA := strings.Contains(all, "\tA\t"); hasA != (tt.v4 != "") {
				t.Errorf("A record present %v, want %v:\n%s", hasA, tt.v4 != "", all)
			}
			if has := strings.Contains(all, "port6="); has != (tt.txtPort6 != "") || tt.txtPort6 != "" && !strings.Contains(all, tt.txtPort6) {
				t.Errorf("port6= wrong (want %q):\n%s", tt.txtPort6, all)
			}
			v4, v6, u := Endpoints(port, label_)
			if v4 != h.Public || v6 != h.Public6 || u != h.ULA {
				t.Errorf("Endpoints read back %v %v %v, want %v %v %v", v4, v6, u, h.Public, h.Public6, h.ULA)
			}
		})
	}
}

// No records from an address that cannot be published: the public one
// must be IPv4 (it goes in an A record), the ULA IPv6.
func TestRecordsBadAddresses(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*Host)
	}{
		{"IPv6 public", func(h *Host) { h.Public = netip.MustParseAddrPort("[2001:db8::1]:4500") }},
		{"no public", func(h *Host) { h.Public = netip.AddrPort{} }},
		{"IPv4 as IPv6 public", func(h *Host) { h.Public6 = netip.MustParseAddrPort("203.0.113.7:4500") }},
		{"ULA as IPv6 public", func(h *Host) { h.Public6 = netip.MustParseAddrPort("[fd00::1]:4500") }},
		{"global ULA", func(h *Host) { h.ULA = netip.MustParseAddr("2001:db8::1") }},
		{"IPv4 ULA", func(h *Host) { h.ULA = netip.MustParseAddr("10.0.0.1") }},
		{"no ULA", func(h *Host) { h.ULA = netip.Addr{} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := laptop()
			tt.edit(&h)
			if recs, err := h.Records(); err == nil {
				t.Errorf("Records() = %v, want an error", recs)
			}
		})
	}
}

// FuzzEndpoints: Endpoints reads whatever a peer's records hold (any
// message the server relays) without failing, and what it returns keeps
// its promises: an IPv4 endpoint is IPv4, an IPv6 one is neither a ULA
// nor IPv4 in disguise, the ULA is inside fc00::/7.
func FuzzEndpoints(f *testing.F) {
	h := laptop()
	h.Public6 = netip.MustParseAddrPort("[2001:db8:1:1::10]:61000")
	recs, _ := h.Records()
	m := new(dns.Msg)
	m.Answer = recs
	seed, _ := m.Pack()
	f.Add(uint16(4500), seed)
	f.Fuzz(func(t *testing.T, port uint16, b []byte) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		v4, v6, u := Endpoints(port, m.Answer)
		if v4.IsValid() && !v4.Addr().Is4() {
			t.Errorf("IPv4 endpoint %v", v4)
		}
		if v6.IsValid() && (!v6.Addr().Is6() || v6.Addr().Is4In6() || IsULA(v6.Addr()) || v6.Port() == 0) {
			t.Errorf("IPv6 endpoint %v", v6)
		}
		if u.IsValid() && !IsULA(u) {
			t.Errorf("ULA %v", u)
		}
	})
}

// A certificate goes into the TXT record after pk=; Extra records come
// last and are not among what the host deletes.
func TestCertAndExtra(t *testing.T) {
	h := laptop()
	h.Certs = []string{"cert=AQID", "cert=BAUG"}
	rl := &dns.TXT{Hdr: dns.RR_Header{Name: "_btmm-revoked.alice.members.example.com.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{"txtvers=1", "rl=AAAA"}}
	h.Extra = []dns.RR{rl}
	recs, err := h.AllRecords()
	if err != nil {
		t.Fatal(err)
	}
	if txt := recs[3].(*dns.TXT).Txt; !slices.Equal(txt, []string{"txtvers=1", "pk=" + h.Key, "cert=AQID", "cert=BAUG", "ciphers=aes256gcm,chacha20poly1305"}) {
		t.Errorf("TXT %q", txt)
	}
	if recs[len(recs)-1] != rl {
		t.Errorf("the extra record is not last: %v", recs)
	}
	for _, rr := range h.remove().Ns {
		if dns.CanonicalName(rr.Header().Name) == rl.Hdr.Name {
			t.Errorf("the host deletes the shared %v", rr)
		}
	}
}
