package dnssd

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		spec string
		want Service
	}{
		{"ssh", Service{Type: "_ssh._tcp", Port: 22}},
		{"SMB", Service{Type: "_smb._tcp", Port: 445}},
		{"rfb", Service{Type: "_rfb._tcp", Port: 5900}},
		{"afp", Service{Type: "_afpovertcp._tcp", Port: 548}},
		{"sftp-ssh", Service{Type: "_sftp-ssh._tcp", Port: 22}},
		{"https", Service{Type: "_https._tcp", Port: 443}},
		{"http:8080 path=/", Service{Type: "_http._tcp", Port: 8080, TXT: []string{"path=/"}}},
		{"  ssh:2222   a=1 b= flag  ", Service{Type: "_ssh._tcp", Port: 2222, TXT: []string{"a=1", "b=", "flag"}}},
		{"ipp:631 rp=printers/x", Service{Type: "_ipp._tcp", Port: 631, TXT: []string{"rp=printers/x"}}},
		{"_daap._tcp:3689", Service{Type: "_daap._tcp", Port: 3689}},
		{"_sip._udp.:5060", Service{Type: "_sip._udp", Port: 5060}},
	} {
		got, err := Parse(tt.spec)
		if err != nil || got.Type != tt.want.Type || got.Port != tt.want.Port || !slices.Equal(got.TXT, tt.want.TXT) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.spec, got, err, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct{ spec, want string }{
		{"", "empty"},
		{"ipp", "give its port"},
		{"ssh:0", "not from 1 to 65535"},
		{"ssh:70000", "not from 1 to 65535"},
		{"ssh:x", "not from 1 to 65535"},
		{"a_b:80", "not a service name"},
		{"averyveryverylongname:80", "longer than 15"},
		{"-ssh:80", "hyphen"},
		{"a--b:80", "two hyphens"},
		{"123:80", "no letter"},
		{"_x._sctp:80", "not a service type"},
		{"ssh =v", "no key"},
		{"ssh a=1 A=2", "given twice"},
		{"ssh k\x01=1", "printable ASCII"},
		{"ssh k=" + strings.Repeat("x", 300), "255 octets"},
	} {
		_, err := Parse(tt.spec)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q): %v, want an error with %q", tt.spec, err, tt.want)
		}
	}
}

func TestParseAll(t *testing.T) {
	s, err := ParseAll([]string{"ssh", "smb", "rfb", "http:8080 path=/"})
	if err != nil || len(s) != 4 {
		t.Fatalf("%+v %v", s, err)
	}
	_, err = ParseAll([]string{"http", "http:8080", "ipp"})
	if err == nil || !strings.Contains(err.Error(), "already given by \"http\"") || !strings.Contains(err.Error(), "give its port") {
		t.Errorf("duplicates and a bad one: %v", err)
	}
}

func TestNames(t *testing.T) {
	const d = "alice.members.example.com."
	if got := InstanceName("desktop", "_ssh._tcp", "alice.members.example.com"); got != "desktop._ssh._tcp."+d {
		t.Errorf("InstanceName: %s", got)
	}
	n := InstanceName(`My Mac.local\x`, "_http._tcp", d)
	if n != `My Mac\.local\\x._http._tcp.`+d {
		t.Errorf("escaped: %s", n)
	}
	for _, tt := range []struct{ name, inst, typ string }{
		{"desktop._ssh._tcp." + d, "desktop", "_ssh._tcp"},
		{n, `My Mac.local\x`, "_http._tcp"},
		{`a\032b._http._tcp.` + d, "a b", "_http._tcp"},
	} {
		inst, typ, ok := SplitInstance(tt.name, d)
		if !ok || inst != tt.inst || typ != tt.typ {
			t.Errorf("SplitInstance(%q) = %q %q %v", tt.name, inst, typ, ok)
		}
	}
	for _, bad := range []string{"_ssh._tcp." + d, "x._ssh._tcp.bob.members.example.com.", "x.ssh._tcp." + d, "x._ssh._sctp." + d} {
		if _, _, ok := SplitInstance(bad, d); ok {
			t.Errorf("SplitInstance(%q) took it", bad)
		}
	}
	if ServicesDomain(d) != "_services._dns-sd._udp."+d || TypeName("_ssh._tcp", d) != "_ssh._tcp."+d {
		t.Error("ServicesDomain or TypeName")
	}
	for in, want := range map[string]string{"ssh": "_ssh._tcp", "_SSH._tcp.": "_ssh._tcp", "afp": "_afpovertcp._tcp", "ipp": "_ipp._tcp"} {
		if got, err := ParseType(in); got != want || err != nil {
			t.Errorf("ParseType(%q) = %q, %v", in, got, err)
		}
	}
}

// From a Linux host (little-endian): sshd on 0.0.0.0:22 and [::]:22, a
// web server on 127.0.0.1:80 and [::1]:80, something on the ULA's 5900,
// and an established connection (state 01).
const procTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19612 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19613 1 0000000000000000 100 0 0 10 0
   2: 0A00020F:0016 0A000202:D2C4 01 00000000:00000000 02:0009A31D 00000000     0        0 21023 4 0000000000000000 20 4 29 10 -1
`
const procTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19614 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19615 1 0000000000000000 100 0 0 10 0
   2: 2C1B5EFD:01004E3D:FF221102:55443FFE:170C 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19616 1 0000000000000000 100 0 0 10 0
   3: 2C1B5EFD01004E3DFF221102554433FE:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19616 1 0000000000000000 100 0 0 10 0
`

func TestParseProcNetTCP(t *testing.T) {
	v4, err := ParseProcNetTCP(strings.NewReader(procTCP))
	if err != nil {
		t.Fatal(err)
	}
	want4 := []Listener{{netip.MustParseAddr("0.0.0.0"), 22}, {netip.MustParseAddr("127.0.0.1"), 80}}
	if !slices.Equal(v4, want4) {
		t.Errorf("tcp: %v, want %v", v4, want4)
	}
	v6, err := ParseProcNetTCP(strings.NewReader(procTCP6))
	if err != nil {
		t.Fatal(err)
	}
	ula := netip.MustParseAddr("fd5e:1b2c:3d4e:1:211:22ff:fe33:4455")
	// The line with colons inside the address is malformed: skipped.
	want6 := []Listener{{netip.IPv6Unspecified(), 22}, {netip.IPv6Loopback(), 80}, {ula, 8080}}
	if !slices.Equal(v6, want6) {
		t.Errorf("tcp6: %v, want %v", v6, want6)
	}
	got := Detect(append(v4, v6...), ula)
	// ssh on ::, not http (loopback only); 8080 is no well-known port;
	// sftp-ssh shares ssh's port.
	if len(got) != 1 || got[0].Type != "_ssh._tcp" || got[0].Port != 22 {
		t.Errorf("Detect: %+v", got)
	}
	got = Detect([]Listener{{netip.MustParseAddr("0.0.0.0"), 445}, {ula, 5900}, {netip.MustParseAddr("fd00::1"), 80}}, ula)
	if len(got) != 1 || got[0].Type != "_rfb._tcp" {
		t.Errorf("Detect: IPv4-only and another ULA do not count: %+v", got)
	}
}

func TestListening(t *testing.T) {
	ls, err := Listening()
	if err != nil {
		t.Skipf("no /proc/net/tcp here: %v", err)
	}
	t.Logf("%d listening sockets", len(ls))
}

func TestMerge(t *testing.T) {
	conf := []Service{{Type: "_ssh._tcp", Port: 2222}}
	got := Merge(conf, []Service{{Type: "_ssh._tcp", Port: 22}, {Type: "_rfb._tcp", Port: 5900}})
	if !Equal(got, []Service{{Type: "_ssh._tcp", Port: 2222}, {Type: "_rfb._tcp", Port: 5900}}) {
		t.Errorf("Merge: %+v", got)
	}
}

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add(procTCP)
	f.Add(procTCP6)
	f.Add("x\n 0: 0:0 0:0 0A\n")
	f.Fuzz(func(t *testing.T, s string) {
		ls, err := ParseProcNetTCP(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, l := range ls {
			if !l.Addr.IsValid() {
				t.Fatalf("an invalid address from %q", s)
			}
		}
	})
}

// A service that parses makes records that survive the wire, and its type
// parses again to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"ssh", "http:8080 path=/", "_ipp._tcp:631 rp=x", "a-b:1 k", "ssh =", "x:99999", `A:1 "`, "ssh k=\\\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := Parse(spec)
		if err != nil {
			return
		}
		if s.Port == 0 {
			t.Fatalf("%q: port 0", spec)
		}
		if again, err := ParseType(s.Type); err != nil || again != s.Type {
			t.Fatalf("%q: type %q parses to %q, %v", spec, s.Type, again, err)
		}
		txt := &dns.TXT{Hdr: dns.RR_Header{Name: InstanceName("h", s.Type, "alice.example."), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{""}}
		if len(s.TXT) > 0 {
			txt.Txt = nil
			for _, x := range s.TXT {
				txt.Txt = append(txt.Txt, EscapeTXT(x))
			}
		}
		buf := make([]byte, 65535)
		n, err := dns.PackRR(txt, buf, 0, nil, false)
		if err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		rr, _, err := dns.UnpackRR(buf[:n], 0)
		if err != nil || !slices.Equal(rr.(*dns.TXT).Txt, txt.Txt) {
			t.Fatalf("%q: TXT %q back as %v, %v", spec, txt.Txt, rr, err)
		}
		// The octets on the wire are the configured ones.
		for i, x := range s.TXT {
			if got := UnescapeTXT(rr.(*dns.TXT).Txt[i]); got != x {
				t.Fatalf("%q: TXT string %q back as %q", spec, x, got)
			}
		}
	})
}

func TestEscapeTXT(t *testing.T) {
	for _, s := range []string{"", "a=b", `q="x"`, `p=C:\dir`, "bin=\x00\xff\n", "é=ü"} {
		if got := UnescapeTXT(EscapeTXT(s)); got != s {
			t.Errorf("%q → %q → %q", s, EscapeTXT(s), got)
		}
	}
	if EscapeTXT(`a"b\c`) != `a\"b\\c` {
		t.Errorf("%s", EscapeTXT(`a"b\c`))
	}
}
