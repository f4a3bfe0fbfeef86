package lab

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestResolver gives hostA a resolver (a DNS server in the server
// namespace, a search domain): a program run there with Exec resolves a
// short name through it, hostB still has the machine's resolver, and
// Close removes the configuration.
func TestResolver(t *testing.T) {
	l := Start(t, Options{})
	server := l.Addr("server")
	pc, err := l.ListenPacket("server", "udp4", netip.AddrPortFrom(server, 53).String())
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddr("fd00::1234")
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		if q := r.Question[0]; q.Name == "desktop.lab.test." && q.Qtype == dns.TypeAAAA {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 60}, AAAA: net.IP(want.AsSlice())})
		} else if q.Name != "desktop.lab.test." {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })

	if err := l.SetResolver("hostA", nil); err != nil {
		t.Fatalf("removing a resolver that was never set: %v", err)
	}
	if err := l.SetResolver("nowhere", []netip.Addr{server}); err == nil {
		t.Error("SetResolver accepts an unknown namespace")
	}
	if err := l.SetResolver("hostA", []netip.Addr{server}, "lab.test"); err != nil {
		t.Fatal(err)
	}
	out, err := l.Exec("hostA", "getent", "ahostsv6", "desktop").CombinedOutput()
	if err != nil || !strings.Contains(string(out), want.String()) {
		t.Fatalf("getent ahostsv6 desktop in hostA: %v\n%s", err, out)
	}
	if out, err := l.Exec("hostB", "cat", "/etc/resolv.conf").CombinedOutput(); err != nil || strings.Contains(string(out), server.String()) {
		t.Errorf("hostB's resolv.conf names the lab's server: %v\n%s", err, out)
	}
	file := filepath.Join(etcNetnsDir, l.NS("hostA"), "resolv.conf")
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(file)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left %s (%v)", filepath.Dir(file), err)
	}
}
