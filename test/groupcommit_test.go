package test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestConcurrentPrerequisites: 64 UPDATEs at once, over UDP and TCP, each
// adding its own address at one name on condition that the name does not
// exist yet (RFC 2136 §2.4.5). The server commits concurrent UPDATEs in
// groups; still exactly one of them may succeed, the others get YXDOMAIN,
// and the name holds the winner's address alone. A second round on
// another name, half of them with a prerequisite that fails and half
// without any, leaves exactly the unconditional half applied.
func TestConcurrentPrerequisites(t *testing.T) {
	// 64 UPDATEs of one key at once: more than its burst, so no rate.
	s := startServer(t, corefile("", "rate 0"), alice)
	const n = 64
	send := func(i int, m *dns.Msg) int {
		netw := []string{"udp", "tcp"}[i%2]
		c := &dns.Client{Net: netw, Timeout: 5 * time.Second, TsigSecret: map[string]string{alice.name: alice.secret}}
		m.SetTsig(alice.name, alice.miekgAlg(), 300, time.Now().Unix())
		r, _, err := c.Exchange(m, s.UpdateAddr())
		if err != nil {
			t.Errorf("UPDATE %d over %s: %v", i, netw, err)
			return -1
		}
		return r.Rcode
	}
	addr := func(name string, i int) dns.RR {
		return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, byte(i+1))}
	}

	race := "race.alice.members.example.com."
	rcodes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			m := new(dns.Msg).SetUpdate(zone)
			m.NameNotUsed([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: race}}})
			m.Insert([]dns.RR{addr(race, i)})
			rcodes[i] = send(i, m)
		})
	}
	wg.Wait()
	winner, yx := -1, 0
	for i, rc := range rcodes {
		switch rc {
		case dns.RcodeSuccess:
			if winner >= 0 {
				t.Fatalf("UPDATEs %d and %d both created %s", winner, i, race)
			}
			winner = i
		case dns.RcodeYXDomain:
			yx++
		default:
			t.Errorf("UPDATE %d: %s, want NOERROR or YXDOMAIN", i, dns.RcodeToString[rc])
		}
	}
	if winner < 0 || yx != n-1 {
		t.Fatalf("%d UPDATEs created the name and %d got YXDOMAIN; want 1 and %d", map[bool]int{true: 1}[winner >= 0], yx, n-1)
	}
	if got := answers(query(t, s.Addr(), race, dns.TypeA)); len(got) != 1 || got[0] != addr(race, winner).String() {
		t.Fatalf("%s holds %v, want the winner's %v alone", race, got, addr(race, winner))
	}

	mixed := "mixed.alice.members.example.com."
	for i := range n {
		wg.Go(func() {
			m := new(dns.Msg).SetUpdate(zone)
			if i%2 == 0 {
				m.RRsetUsed([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: mixed, Rrtype: dns.TypeTXT}}}) // never true
			}
			m.Insert([]dns.RR{addr(mixed, i)})
			if rc, want := send(i, m), map[bool]int{true: dns.RcodeNXRrset, false: dns.RcodeSuccess}[i%2 == 0]; rc != want {
				t.Errorf("UPDATE %d: %s, want %s", i, dns.RcodeToString[rc], dns.RcodeToString[want])
			}
		})
	}
	wg.Wait()
	// 32 addresses do not fit in 512 octets: ask over TCP.
	r, _, err := (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(new(dns.Msg).SetQuestion(mixed, dns.TypeA), s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	got := answers(r)
	if len(got) != n/2 {
		t.Fatalf("%s holds %d addresses, want the %d of the UPDATEs without a failing prerequisite: %v", mixed, len(got), n/2, got)
	}
	for i := 1; i < n; i += 2 {
		want := addr(mixed, i).String()
		found := false
		for _, a := range got {
			found = found || a == want
		}
		if !found {
			t.Errorf("%s lacks %s, which UPDATE %d added unconditionally", mixed, want, i)
		}
	}
}
