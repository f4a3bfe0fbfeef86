package discover

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const (
	user = "alice.members.example.com."
	zone = "members.example.com."
)

// fakeDNS is a miekg/dns server on 127.0.0.1, UDP and TCP on one port,
// that answers with answer and records every question it is asked.
type fakeDNS struct {
	addr string

	mu     sync.Mutex
	asked  []asked
	answer func(q dns.Question, tcp bool) *dns.Msg // nil: NXDOMAIN
}

type asked struct {
	name  string // canonical
	qtype uint16
	tcp   bool
}

func newFakeDNS(t *testing.T, answer func(q dns.Question, tcp bool) *dns.Msg) *fakeDNS {
	t.Helper()
	f := &fakeDNS{answer: answer}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		_, tcp := w.RemoteAddr().(*net.TCPAddr)
		q := r.Question[0]
		f.mu.Lock()
		f.asked = append(f.asked, asked{dns.CanonicalName(q.Name), q.Qtype, tcp})
		f.mu.Unlock()
		var m *dns.Msg
		if f.answer != nil {
			m = f.answer(q, tcp)
		}
		if m == nil {
			m = new(dns.Msg).SetRcode(r, dns.RcodeNameError)
		} else {
			m.SetRcode(r, m.Rcode)
		}
		w.WriteMsg(m)
	})
	// The same port for UDP and TCP: retry if the TCP one is taken.
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no port free for both UDP and TCP")
	}
	f.addr = pc.LocalAddr().String()
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
	return f
}

func (f *fakeDNS) questions() []asked {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

func (f *fakeDNS) resolver() *Resolver {
	return &Resolver{Server: f.addr, Timeout: 2 * time.Second}
}

func rr(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// zoneData answers from a fixed set of records: the records at the name
// with the type, else NODATA if the name has any, else NXDOMAIN. With
// extra set, an SRV answer carries the targets' A and AAAA records.
func zoneData(t *testing.T, extra bool, records ...string) func(dns.Question, bool) *dns.Msg {
	var rrs []dns.RR
	for _, s := range records {
		rrs = append(rrs, rr(t, s))
	}
	return func(q dns.Question, _ bool) *dns.Msg {
		m := new(dns.Msg)
		exists := false
		for _, r := range rrs {
			if !strings.EqualFold(r.Header().Name, q.Name) {
				continue
			}
			exists = true
			if r.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, dns.Copy(r))
			}
		}
		if !exists {
			return nil
		}
		if extra {
			for _, a := range m.Answer {
				s, ok := a.(*dns.SRV)
				if !ok {
					continue
				}
				for _, r := range rrs {
					if t := r.Header().Rrtype; strings.EqualFold(r.Header().Name, s.Target) && (t == dns.TypeA || t == dns.TypeAAAA) {
						m.Extra = append(m.Extra, dns.Copy(r))
					}
				}
			}
		}
		return m
	}
}

// The order of srv-discovery's README ("What btmm-client looks up").
var (
	updateOrder = []string{
		"_dns-update-tls._tcp." + user, "_dns-update-tls._udp." + user, "_dns-update._udp." + user,
		"_dns-update-tls._tcp." + zone, "_dns-update-tls._udp." + zone, "_dns-update._udp." + zone,
	}
	llqOrder = []string{
		"_dns-llq-tls._tcp." + user, "_dns-llq-tls._udp." + user, "_dns-llq._udp." + user,
		"_dns-llq-tls._tcp." + zone, "_dns-llq-tls._udp." + zone, "_dns-llq._udp." + zone,
	}
)

func srvQuestions(qs []asked) []string {
	var out []string
	for _, q := range qs {
		if q.qtype == dns.TypeSRV {
			out = append(out, q.name)
		}
	}
	return out
}

// Find asks the names in the documented order and takes the first that
// answers, saying whether it is a TLS one and which name it was.
func TestFindOrder(t *testing.T) {
	for _, tt := range []struct {
		svc   Service
		order []string
	}{{Update, updateOrder}, {LLQ, llqOrder}} {
		for i, name := range tt.order {
			t.Run(string(tt.svc)+"/"+name, func(t *testing.T) {
				f := newFakeDNS(t, zoneData(t, true,
					name+" 300 IN SRV 0 0 5353 ns1.members.example.com.",
					"ns1.members.example.com. 300 IN A 192.0.2.53"))
				ep, err := f.resolver().Find(t.Context(), tt.svc, "alice.members.example.com", "members.example.com", false)
				if err != nil {
					t.Fatal(err)
				}
				if ep.Source != name {
					t.Errorf("Source = %q, want %q", ep.Source, name)
				}
				if wantTLS := strings.Contains(name, "-tls."); ep.TLS != wantTLS {
					t.Errorf("TLS = %v, want %v", ep.TLS, wantTLS)
				}
				if want := netip.MustParseAddrPort("192.0.2.53:5353"); ep.Addr != want {
					t.Errorf("Addr = %v, want %v", ep.Addr, want)
				}
				if got := srvQuestions(f.questions()); !slices.Equal(got, tt.order[:i+1]) {
					t.Errorf("asked %q, want %q", got, tt.order[:i+1])
				}
			})
		}
	}
}

// With tlsOnly, the plain names are neither asked nor taken: a zone that
// offers only plain DNS does not offer the service.
func TestFindTLSOnly(t *testing.T) {
	f := newFakeDNS(t, zoneData(t, true,
		"_dns-update._udp."+user+" 300 IN SRV 0 0 53 ns1.members.example.com.",
		"_dns-update._udp."+zone+" 300 IN SRV 0 0 53 ns1.members.example.com.",
		"ns1.members.example.com. 300 IN A 192.0.2.53"))
	_, err := f.resolver().Find(t.Context(), Update, user, zone, true)
	if !errors.Is(err, ErrNotOffered) {
		t.Fatalf("err = %v, want ErrNotOffered", err)
	}
	for _, q := range srvQuestions(f.questions()) {
		if !strings.Contains(q, "-tls.") {
			t.Errorf("asked %s with tlsOnly", q)
		}
	}
	if got := len(srvQuestions(f.questions())); got != 4 {
		t.Errorf("asked %d SRV names, want the 4 TLS ones", got)
	}

	// And a TLS name is still found.
	f = newFakeDNS(t, zoneData(t, true,
		"_dns-update._udp."+user+" 300 IN SRV 0 0 53 plain.members.example.com.",
		"_dns-update-tls._udp."+zone+" 300 IN SRV 0 0 853 tls.members.example.com.",
		"plain.members.example.com. 300 IN A 192.0.2.1",
		"tls.members.example.com. 300 IN A 192.0.2.2"))
	ep, err := f.resolver().Find(t.Context(), Update, user, zone, true)
	if err != nil {
		t.Fatal(err)
	}
	if ep.Name != "tls.members.example.com." || !ep.TLS || ep.Addr != netip.MustParseAddrPort("192.0.2.2:853") {
		t.Errorf("got %v, want the TLS server at the apex", ep)
	}
}

// Several SRV records: the lowest priority, then the heaviest weight
// (RFC 2782, without the random choice); the endpoint has the target's
// name in canonical form, its port and the SRV's TTL.
func TestFindSRVOrder(t *testing.T) {
	name := "_dns-llq-tls._tcp." + user
	f := newFakeDNS(t, zoneData(t, true,
		name+" 100 IN SRV 20 100 1001 far.members.example.com.",
		name+" 100 IN SRV 10 5 1002 light.members.example.com.",
		name+" 120 IN SRV 10 50 1003 Heavy.Members.Example.COM.",
		name+" 100 IN SRV 10 0 1004 zero.members.example.com.",
		"far.members.example.com. 300 IN A 192.0.2.1",
		"light.members.example.com. 300 IN A 192.0.2.2",
		"heavy.members.example.com. 300 IN A 192.0.2.3",
		"zero.members.example.com. 300 IN A 192.0.2.4"))
	ep, err := f.resolver().Find(t.Context(), LLQ, user, zone, true)
	if err != nil {
		t.Fatal(err)
	}
	want := Endpoint{Addr: netip.MustParseAddrPort("192.0.2.3:1003"), Name: "heavy.members.example.com.", TLS: true, Source: name, TTL: 120 * time.Second}
	if ep != want {
		t.Errorf("got %+v, want %+v", ep, want)
	}
}

// NXDOMAIN, NODATA or a target of "." for every name: the service is not
// offered, which callers tell with errors.Is.
func TestFindNotOffered(t *testing.T) {
	var dots []string
	for _, n := range updateOrder {
		dots = append(dots, n+" 300 IN SRV 0 0 0 .")
	}
	for _, tt := range []struct {
		name   string
		answer func(dns.Question, bool) *dns.Msg
	}{
		{"nxdomain", nil},
		{"nodata", func(q dns.Question, _ bool) *dns.Msg {
			// Every name exists, with a TXT record only.
			m := new(dns.Msg)
			if q.Qtype == dns.TypeTXT {
				m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{"x"}}}
			}
			return m
		}},
		{"dot", zoneData(t, false, dots...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeDNS(t, tt.answer)
			_, err := f.resolver().Find(t.Context(), Update, user, zone, false)
			if !errors.Is(err, ErrNotOffered) {
				t.Fatalf("err = %v, want ErrNotOffered", err)
			}
			if got := srvQuestions(f.questions()); !slices.Equal(got, updateOrder) {
				t.Errorf("asked %q, want every name %q", got, updateOrder)
			}
			for _, q := range f.questions() {
				if q.qtype != dns.TypeSRV {
					t.Errorf("asked %s %s: no address is wanted for a service not offered", q.name, dns.TypeToString[q.qtype])
				}
			}
		})
	}
}

// A server failure is not "not offered": Find reports it and asks no
// further, rather than falling through to names that might send the
// client somewhere else.
func TestFindServerFailure(t *testing.T) {
	f := newFakeDNS(t, func(q dns.Question, _ bool) *dns.Msg {
		m := new(dns.Msg)
		m.Rcode = dns.RcodeServerFailure
		return m
	})
	_, err := f.resolver().Find(t.Context(), Update, user, zone, false)
	if err == nil || errors.Is(err, ErrNotOffered) {
		t.Fatalf("err = %v, want a failure other than ErrNotOffered", err)
	}
	if got := srvQuestions(f.questions()); len(got) != 1 {
		t.Errorf("asked %q after SERVFAIL, want only the first name", got)
	}
}

// The target's address comes from the additional section when it is
// there (no further question), else from an A query, else from an AAAA
// query.
func TestFindTargetAddress(t *testing.T) {
	srv := "_dns-update-tls._tcp." + user + " 300 IN SRV 0 0 853 ns1.members.example.com."
	for _, tt := range []struct {
		name    string
		extra   bool
		records []string
		want    string
		asked   []uint16 // the questions after the SRV one
	}{
		{"additional A", true, []string{"NS1.members.example.com. 300 IN A 192.0.2.53"}, "192.0.2.53:853", nil},
		{"additional AAAA", true, []string{"ns1.members.example.com. 300 IN AAAA 2001:db8::53"}, "[2001:db8::53]:853", nil},
		{"additional A and AAAA", true, []string{"ns1.members.example.com. 300 IN AAAA 2001:db8::53", "ns1.members.example.com. 300 IN A 192.0.2.53"}, "192.0.2.53:853", nil},
		{"looked-up A", false, []string{"ns1.members.example.com. 300 IN A 192.0.2.54", "ns1.members.example.com. 300 IN AAAA 2001:db8::54"}, "192.0.2.54:853", []uint16{dns.TypeA}},
		{"looked-up AAAA", false, []string{"ns1.members.example.com. 300 IN AAAA 2001:db8::55"}, "[2001:db8::55]:853", []uint16{dns.TypeA, dns.TypeAAAA}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeDNS(t, zoneData(t, tt.extra, append([]string{srv}, tt.records...)...))
			ep, err := f.resolver().Find(t.Context(), Update, user, zone, true)
			if err != nil {
				t.Fatal(err)
			}
			if want := netip.MustParseAddrPort(tt.want); ep.Addr != want {
				t.Errorf("Addr = %v, want %v", ep.Addr, want)
			}
			var got []uint16
			for _, q := range f.questions()[1:] {
				if q.name != "ns1.members.example.com." {
					t.Errorf("asked %s", q.name)
				}
				got = append(got, q.qtype)
			}
			if !slices.Equal(got, tt.asked) {
				t.Errorf("asked types %v after the SRV, want %v", got, tt.asked)
			}
		})
	}
}

// A target with no address at all is an error, not "not offered": the
// zone does offer the service, and polling would hide the broken zone.
func TestFindTargetWithoutAddress(t *testing.T) {
	f := newFakeDNS(t, zoneData(t, false,
		"_dns-update-tls._tcp."+user+" 300 IN SRV 0 0 853 ns1.members.example.com.",
		"ns1.members.example.com. 300 IN TXT \"no address\""))
	_, err := f.resolver().Find(t.Context(), Update, user, zone, true)
	if err == nil || errors.Is(err, ErrNotOffered) {
		t.Fatalf("err = %v, want an error other than ErrNotOffered", err)
	}
	if !strings.Contains(err.Error(), "ns1.members.example.com.") {
		t.Errorf("error %q does not name the target", err)
	}
}

// A truncated UDP answer is asked again over TCP.
func TestFindTruncated(t *testing.T) {
	name := "_dns-update-tls._tcp." + user
	full := zoneData(t, true,
		name+" 300 IN SRV 0 0 853 ns1.members.example.com.",
		"ns1.members.example.com. 300 IN A 192.0.2.53")
	f := newFakeDNS(t, func(q dns.Question, tcp bool) *dns.Msg {
		if !tcp && q.Qtype == dns.TypeSRV {
			m := new(dns.Msg)
			m.Truncated = true
			return m
		}
		return full(q, tcp)
	})
	ep, err := f.resolver().Find(t.Context(), Update, user, zone, true)
	if err != nil {
		t.Fatal(err)
	}
	if ep.Addr != netip.MustParseAddrPort("192.0.2.53:853") {
		t.Errorf("Addr = %v", ep.Addr)
	}
	if qs := f.questions(); len(qs) != 2 || qs[0].tcp || !qs[1].tcp {
		t.Errorf("questions %+v, want one over UDP then one over TCP", qs)
	}
}

// Find gives up when its context ends, with the context's error.
func TestFindContext(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	r := &Resolver{Server: pc.LocalAddr().String(), Timeout: 10 * time.Second}
	start := time.Now()
	_, err = r.Find(ctx, Update, user, zone, true)
	if err == nil || errors.Is(err, ErrNotOffered) {
		t.Errorf("err = %v, want a failure to ask", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Find took %v after its context ended", d)
	}
}
