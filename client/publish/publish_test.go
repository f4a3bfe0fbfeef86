package publish

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/backoff"
	"github.com/openbtmm/btmm/client/discover"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
)

const zone = "members.example.com."

var aliceKey = keyfile.Key{Name: "alice.members.example.com.", Algorithm: dns.HmacSHA256, Secret: "c2VjcmV0IG9mIHRoaXJ0eS10d28gb2N0ZXRzIGZvciBITUFD"}

// update is one UPDATE as the fake server received it.
type update struct {
	at      time.Time
	msg     *dns.Msg
	tsigErr error // from miekg/dns's own TSIG check with the server's secret
	tcp     bool
}

// updateServer is an update server on 127.0.0.1: a miekg/dns server that
// checks TSIG with its TsigSecret, applies UPDATEs (RFC 2136 §3.4.2) to
// an in-memory zone, and grants leases.
type updateServer struct {
	t    *testing.T
	addr string

	mu      sync.Mutex // guards following
	secret  string     // the server's copy of alice's secret
	grant   uint32     // the lease granted and echoed; 0: no option in the reply
	rcodes  []int      // answer the next UPDATEs with these rcodes
	zone    []dns.RR
	updates []update
}

// newUpdateServer serves on network: "udp" (UDP and TCP on one port),
// "tcp" or "tls" (with cert).
func newUpdateServer(t *testing.T, network string, cert *tls.Certificate) *updateServer {
	t.Helper()
	s := &updateServer{t: t, secret: aliceKey.Secret}
	var servers []*dns.Server
	tsig := func() map[string]string { return map[string]string{aliceKey.Name: s.secret} }
	mk := func() *dns.Server {
		return &dns.Server{
			Handler:    dns.HandlerFunc(s.serve),
			TsigSecret: tsig(),
			// miekg/dns refuses UPDATEs by default.
			MsgAcceptFunc: func(h dns.Header) dns.MsgAcceptAction {
				if h.Bits&(1<<15) != 0 {
					return dns.MsgIgnore
				}
				return dns.MsgAccept
			},
		}
	}
	switch network {
	case "udp":
		for range 20 {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", pc.LocalAddr().String())
			if err != nil {
				pc.Close()
				continue
			}
			u, c := mk(), mk()
			u.PacketConn, c.Listener = pc, ln
			servers, s.addr = []*dns.Server{u, c}, pc.LocalAddr().String()
			break
		}
	case "tcp", "tls":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if network == "tls" {
			ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}})
		}
		c := mk()
		c.Listener = ln
		servers, s.addr = []*dns.Server{c}, ln.Addr().String()
	}
	if s.addr == "" {
		t.Fatal("no server")
	}
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return s
}

func (s *updateServer) serve(w dns.ResponseWriter, r *dns.Msg) {
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updates = append(s.updates, update{at: time.Now(), msg: r.Copy(), tsigErr: w.TsigStatus(), tcp: tcp})
	m := new(dns.Msg).SetReply(r)
	t := r.IsTsig()
	if t == nil || w.TsigStatus() != nil {
		// As a TSIG server does (RFC 8945 §5.3.2): NOTAUTH, BADSIG, unsigned.
		m.Rcode = dns.RcodeNotAuth
		if t == nil {
			w.WriteMsg(m)
			return
		}
		m.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
		m.IsTsig().Error = dns.RcodeBadSig
		b, err := m.Pack()
		if err != nil {
			s.t.Error(err)
		}
		w.Write(b)
		return
	}
	switch {
	case r.Opcode != dns.OpcodeUpdate:
		m.Rcode = dns.RcodeNotImplemented
	case len(s.rcodes) > 0:
		m.Rcode, s.rcodes = s.rcodes[0], s.rcodes[1:]
	case !s.prereqsLocked(r):
		m.Rcode = dns.RcodeYXRrset
	default:
		s.applyLocked(r)
		if _, ok, _ := updatelease.From(r); ok && s.grant != 0 {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, updatelease.Lease{Lease: s.grant}.Option())
		}
	}
	m.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
	w.WriteMsg(m)
}

// prereqsLocked checks r's "RRset does not exist" prerequisites (RFC 2136
// §2.4.3), the only ones the client sends.
func (s *updateServer) prereqsLocked(r *dns.Msg) bool {
	for _, p := range r.Answer {
		h := p.Header()
		if h.Class == dns.ClassNONE && slices.ContainsFunc(s.zone, func(rr dns.RR) bool {
			return strings.EqualFold(rr.Header().Name, h.Name) && rr.Header().Rrtype == h.Rrtype
		}) {
			return false
		}
	}
	return true
}

// applyLocked applies the update section of r (RFC 2136 §3.4.2.6).
func (s *updateServer) applyLocked(r *dns.Msg) {
	for _, u := range r.Ns {
		h := u.Header()
		switch h.Class {
		case dns.ClassANY:
			s.zone = slices.DeleteFunc(s.zone, func(rr dns.RR) bool {
				return strings.EqualFold(rr.Header().Name, h.Name) && (h.Rrtype == dns.TypeANY || rr.Header().Rrtype == h.Rrtype)
			})
		case dns.ClassNONE:
			c := dns.Copy(u)
			c.Header().Class = dns.ClassINET
			s.zone = slices.DeleteFunc(s.zone, func(rr dns.RR) bool { return dns.IsDuplicate(rr, c) })
		case dns.ClassINET:
			s.zone = slices.DeleteFunc(s.zone, func(rr dns.RR) bool { return dns.IsDuplicate(rr, u) })
			s.zone = append(s.zone, dns.Copy(u))
		}
	}
}

func (s *updateServer) set(f func(*updateServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *updateServer) got() []update {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.updates)
}

// records returns the zone's records as text, sorted.
func (s *updateServer) records() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, rr := range s.zone {
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

func mustRR(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func texts(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run starts p.Run and returns a function that stops it and returns
// Run's error.
func run(t *testing.T, p *Publisher) (stop func() error) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func newPublisher(s *updateServer, transport string, lease time.Duration) *Publisher {
	return New(Config{Resolver: &discover.Resolver{}, Zone: zone, Key: aliceKey, Transport: transport, Server: s.addr, Lease: lease})
}

// desktopPTR is another host's entry in alice's host list: the laptop's
// UPDATEs must leave it alone.
const desktopPTR = "_autotunnel._udp.alice.members.example.com. 60 IN PTR desktop.alice.members.example.com."

// One UPDATE, signed with the user's key and carrying the lease asked
// for, makes the host's records exactly those of Records, whatever was
// there before, without touching the other hosts' entries; Status tells
// what was done.
func TestPublish(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			s := newUpdateServer(t, network, nil)
			h := laptop()
			s.set(func(s *updateServer) {
				s.grant = 3600
				s.zone = []dns.RR{
					mustRR(t, desktopPTR),
					// What an earlier run left: another address and key.
					mustRR(t, h.LabelName()+" 60 IN A 198.51.100.1"),
					mustRR(t, h.LabelName()+" 60 IN TXT \"txtvers=1\" \"pk=old\""),
					mustRR(t, h.SRVName()+" 60 IN SRV 0 0 1234 "+h.LabelName()),
					mustRR(t, h.HostName()+" 60 IN AAAA fd00::99"),
				}
			})
			p := newPublisher(s, network, 90*time.Minute)
			run(t, p)
			p.Set(h)
			waitFor(t, "the records to be published", func() bool { return !p.Status().Published.IsZero() })

			ups := s.got()
			if len(ups) != 1 {
				t.Fatalf("%d UPDATEs, want 1", len(ups))
			}
			u := ups[0].msg
			if ups[0].tsigErr != nil {
				t.Errorf("TSIG does not verify with the user's secret: %v", ups[0].tsigErr)
			}
			if tsig := u.IsTsig(); tsig == nil || tsig.Hdr.Name != aliceKey.Name || tsig.Algorithm != aliceKey.Algorithm {
				t.Errorf("TSIG %v, want key %s with %s", tsig, aliceKey.Name, aliceKey.Algorithm)
			}
			if u.Opcode != dns.OpcodeUpdate || len(u.Question) != 1 || u.Question[0].Name != zone || u.Question[0].Qtype != dns.TypeSOA {
				t.Errorf("header/zone section: opcode %d, %v; want an UPDATE of %s SOA", u.Opcode, u.Question, zone)
			}
			if len(u.Answer) != 0 {
				t.Errorf("prerequisites %v, want none (RFC 9664 §5.1)", u.Answer)
			}
			if l, ok, err := updatelease.From(u); !ok || err != nil || l.Lease != 5400 {
				t.Errorf("UPDATE-LEASE %+v (present %v, %v), want 5400 s", l, ok, err)
			}
			if network == "udp" && !ups[0].tcp && u.Len() > dns.MinMsgSize {
				t.Errorf("a %d-octet UPDATE went by UDP", u.Len())
			}

			recs, _ := h.Records()
			want := append(texts(recs), mustRR(t, desktopPTR).String())
			slices.Sort(want)
			if got := s.records(); !slices.Equal(got, want) {
				t.Errorf("zone after the UPDATE:\n%s\nwant:\n%s", join(got), join(want))
			}

			st := p.Status()
			if st.Server != s.addr || st.Error != "" || st.Lease != time.Hour.String() {
				t.Errorf("status %+v, want server %s, lease 1h (granted), no error", st, s.addr)
			}
			if got := slices.Sorted(slices.Values(st.Records)); !slices.Equal(got, texts(recs)) {
				t.Errorf("status records %q, want %q", got, texts(recs))
			}
		})
	}
}

// Set sends the new records at once, not at the next refresh; the old
// address does not linger.
func TestPublishSetAtOnce(t *testing.T) {
	s := newUpdateServer(t, "tcp", nil)
	s.set(func(s *updateServer) { s.grant = 3600 })
	p := newPublisher(s, "tcp", time.Hour)
	run(t, p)
	h := laptop()
	p.Set(h)
	waitFor(t, "the first UPDATE", func() bool { return len(s.got()) == 1 && !p.Status().Published.IsZero() })
	h.Public = netip.MustParseAddrPort("198.51.100.9:61000")
	p.Set(h)
	waitFor(t, "the second UPDATE", func() bool { return len(s.got()) == 2 })
	if d := s.got()[1].at.Sub(s.got()[0].at); d > 5*time.Second {
		t.Errorf("the change went out %v after the first UPDATE", d)
	}
	waitFor(t, "the new address in the zone", func() bool {
		return slices.Contains(s.records(), h.LabelName()+"\t60\tIN\tA\t198.51.100.9")
	})
	recs, _ := h.Records()
	if got := s.records(); !slices.Equal(got, texts(recs)) {
		t.Errorf("zone:\n%s\nwant:\n%s", join(got), join(texts(recs)))
	}
}

// The records are refreshed at 80 % of the lease the server granted, plus
// up to 5 %; Status.Refresh says when.
func TestPublishRefresh(t *testing.T) {
	for _, tt := range []struct {
		name  string
		asked time.Duration
		grant uint32 // 0: the server echoes no lease: keep to the one asked
		lease time.Duration
	}{
		{"granted", time.Hour, 1, time.Second},
		{"not echoed", time.Second, 0, time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newUpdateServer(t, "tcp", nil)
			s.set(func(s *updateServer) { s.grant = tt.grant })
			p := newPublisher(s, "tcp", tt.asked)
			run(t, p)
			p.Set(laptop())
			waitFor(t, "three UPDATEs", func() bool { return len(s.got()) >= 3 })
			ups := s.got()
			for i := 1; i < 3; i++ {
				d := ups[i].at.Sub(ups[i-1].at)
				if d < tt.lease*8/10 || d > tt.lease*85/100+time.Second {
					t.Errorf("refresh %d came %v after the UPDATE before, want 80 to 85 %% of %v", i, d, tt.lease)
				}
				if l, ok, _ := updatelease.From(ups[i].msg); !ok || time.Duration(l.Lease)*time.Second != tt.asked {
					t.Errorf("refresh %d asks for %v, want %v again", i, time.Duration(l.Lease)*time.Second, tt.asked)
				}
			}
			st := p.Status()
			if st.Lease != tt.lease.String() {
				t.Errorf("status lease %q, want %v", st.Lease, tt.lease)
			}
			if d := st.Refresh.Sub(st.Published); d < tt.lease*8/10 || d > tt.lease*85/100+100*time.Millisecond {
				t.Errorf("status says refresh %v after publishing, want 80 to 85 %% of %v", d, tt.lease)
			}
		})
	}
}

// An error answer is shown in Status, and the UPDATE is tried again with
// back-off (1 s, then 2 s, each ± the jitter) until it succeeds, which
// clears the error.
func TestPublishRcodeRetry(t *testing.T) {
	t.Parallel()
	s := newUpdateServer(t, "tcp", nil)
	s.set(func(s *updateServer) { s.rcodes, s.grant = []int{dns.RcodeRefused, dns.RcodeServerFailure}, 3600 })
	p := newPublisher(s, "tcp", time.Hour)
	run(t, p)
	p.Set(laptop())
	waitFor(t, "the refusal in the status", func() bool { return strings.Contains(p.Status().Error, "REFUSED") })
	if st := p.Status(); !st.Published.IsZero() || len(st.Records) != 0 {
		t.Errorf("status %+v after a refusal, want nothing published", st)
	}
	waitFor(t, "the SERVFAIL in the status", func() bool { return strings.Contains(p.Status().Error, "SERVFAIL") })
	waitFor(t, "success", func() bool { return !p.Status().Published.IsZero() })
	if st := p.Status(); st.Error != "" {
		t.Errorf("error %q after success", st.Error)
	}
	ups := s.got()
	if len(ups) != 3 {
		t.Fatalf("%d UPDATEs, want 3", len(ups))
	}
	for i, min := range []time.Duration{time.Second, 2 * time.Second} {
		lo := time.Duration(float64(min) * (1 - backoff.Jitter))
		if d := ups[i+1].at.Sub(ups[i].at); d < lo || d > min+2*time.Second {
			t.Errorf("retry %d after %v, want about %v", i+1, d, min)
		}
	}
}

// A key the server does not accept: NOTAUTH with the TSIG error, in
// Status, and nothing changes in the zone.
func TestPublishNotAuth(t *testing.T) {
	s := newUpdateServer(t, "tcp", nil)
	s.set(func(s *updateServer) { s.zone = []dns.RR{mustRR(t, desktopPTR)} })
	p := New(Config{Resolver: &discover.Resolver{}, Zone: zone, Transport: "tcp", Server: s.addr, Lease: time.Hour,
		Key: keyfile.Key{Name: aliceKey.Name, Algorithm: aliceKey.Algorithm, Secret: "d3Jvbmcgc2VjcmV0IG9mIHRoaXJ0eS10d28gb2N0ZXRz"}})
	run(t, p)
	p.Set(laptop())
	waitFor(t, "an error", func() bool { return p.Status().Error != "" })
	st := p.Status()
	if !strings.Contains(st.Error, "NOTAUTH") || !strings.Contains(st.Error, "BADSIG") {
		t.Errorf("status error %q, want NOTAUTH and BADSIG", st.Error)
	}
	if !st.Published.IsZero() {
		t.Errorf("published at %v", st.Published)
	}
	if got := s.records(); !slices.Equal(got, []string{mustRR(t, desktopPTR).String()}) {
		t.Errorf("zone %q changed", got)
	}
}

// A clean stop sends a last, signed UPDATE that deletes the host's records
// (and only its own entry in the host list).
func TestPublishRemoveOnStop(t *testing.T) {
	s := newUpdateServer(t, "tcp", nil)
	s.set(func(s *updateServer) { s.grant, s.zone = 3600, []dns.RR{mustRR(t, desktopPTR)} })
	p := newPublisher(s, "tcp", time.Hour)
	stop := run(t, p)
	p.Set(laptop())
	waitFor(t, "the records", func() bool { return !p.Status().Published.IsZero() })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	ups := s.got()
	if len(ups) != 2 {
		t.Fatalf("%d UPDATEs, want the publication and the removal", len(ups))
	}
	last := ups[1]
	if last.tsigErr != nil || last.msg.IsTsig() == nil {
		t.Errorf("the removal is not signed with the user's key: %v", last.tsigErr)
	}
	for _, rr := range last.msg.Ns {
		if rr.Header().Class == dns.ClassINET {
			t.Errorf("the removal adds %v", rr)
		}
	}
	if got := s.records(); !slices.Equal(got, []string{mustRR(t, desktopPTR).String()}) {
		t.Errorf("zone after the removal:\n%s\nwant only the desktop's entry", join(got))
	}
}

// Without Set, Run sends nothing, and a stop sends no removal.
func TestPublishNothingBeforeSet(t *testing.T) {
	s := newUpdateServer(t, "tcp", nil)
	p := newPublisher(s, "tcp", time.Hour)
	stop := run(t, p)
	time.Sleep(50 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := len(s.got()); n != 0 {
		t.Errorf("%d messages sent", n)
	}
}

// Without Config.Server, the update server is found by SRV under the
// user's domain, looked up again for every UPDATE, and reached by TLS
// with the SRV target as the server name.
func TestPublishDiscoveredTLS(t *testing.T) {
	const target = "ns1.members.example.com."
	cert, pool := selfSigned(t, "ns1.members.example.com")
	s := newUpdateServer(t, "tls", &cert)
	s.set(func(s *updateServer) { s.grant = 3600 })
	port := netip.MustParseAddrPort(s.addr).Port()

	var mu sync.Mutex
	var srvQueries int
	dnsAddr := serveDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		q := r.Question[0]
		if q.Qtype == dns.TypeSRV && q.Name == "_dns-update-tls._tcp."+aliceKey.Name {
			mu.Lock()
			srvQueries++
			mu.Unlock()
			m.Answer = []dns.RR{&dns.SRV{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 60}, Port: port, Target: target}}
			m.Extra = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(127, 0, 0, 1)}}
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	p := New(Config{Resolver: &discover.Resolver{Server: dnsAddr}, Zone: zone, Key: aliceKey, TLS: &tls.Config{RootCAs: pool}, Lease: time.Hour})
	run(t, p)
	h := laptop()
	p.Set(h)
	waitFor(t, "the records", func() bool { st := p.Status(); return !st.Published.IsZero() || st.Error != "" })
	if st := p.Status(); st.Error != "" || st.Server != s.addr {
		t.Fatalf("status %+v, want published via %s", st, s.addr)
	}
	h.Public = netip.MustParseAddrPort("198.51.100.9:61000")
	p.Set(h)
	waitFor(t, "the second UPDATE", func() bool { return len(s.got()) == 2 })
	for _, u := range s.got() {
		if !u.tcp || u.tsigErr != nil {
			t.Errorf("UPDATE over TCP %v, TSIG %v", u.tcp, u.tsigErr)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if srvQueries != 2 {
		t.Errorf("the SRV record was asked %d times for 2 UPDATEs", srvQueries)
	}
}

// With transport "tls" and no TLS server found, nothing is sent in clear.
func TestPublishNoTLSServer(t *testing.T) {
	s := newUpdateServer(t, "udp", nil)
	port := netip.MustParseAddrPort(s.addr).Port()
	dnsAddr := serveDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		q := r.Question[0]
		if q.Qtype == dns.TypeSRV && strings.HasPrefix(q.Name, "_dns-update._udp.") {
			m.Answer = []dns.RR{&dns.SRV{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 60}, Port: port, Target: "ns1." + zone}}
			m.Extra = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "ns1." + zone, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(127, 0, 0, 1)}}
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	p := New(Config{Resolver: &discover.Resolver{Server: dnsAddr}, Zone: zone, Key: aliceKey, Lease: time.Hour})
	run(t, p)
	p.Set(laptop())
	waitFor(t, "an error", func() bool { return p.Status().Error != "" })
	if err := p.Status().Error; !strings.Contains(err, discover.ErrNotOffered.Error()) {
		t.Errorf("error %q, want the service not offered", err)
	}
	if n := len(s.got()); n != 0 {
		t.Errorf("%d UPDATEs sent to a plain DNS server", n)
	}
}

// serveDNS runs handler on UDP on 127.0.0.1 and returns its address.
func serveDNS(t *testing.T, handler dns.HandlerFunc) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: handler}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, pool
}
