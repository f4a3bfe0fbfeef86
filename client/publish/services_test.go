package publish

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/dnssd"
)

func withServices(h Host, specs ...string) Host {
	s, err := dnssd.ParseAll(specs)
	if err != nil {
		panic(err)
	}
	h.Services = s
	return h
}

// Each service is a PTR in its type's list, an SRV to the host's name (its
// AAAA is the ULA: through the tunnel), a TXT (one empty string when there
// are no pairs), and the type's PTR in the service-type enumeration.
func TestServiceRecords(t *testing.T) {
	h := withServices(laptop(), "ssh", `http:8080 path=/ x="1"`)
	recs, err := h.AllRecords()
	if err != nil {
		t.Fatal(err)
	}
	const d = "alice.members.example.com."
	want := []string{
		"_ssh._tcp." + d + "\t60\tIN\tPTR\tlaptop._ssh._tcp." + d,
		"laptop._ssh._tcp." + d + "\t60\tIN\tSRV\t0 0 22 laptop." + d,
		"laptop._ssh._tcp." + d + "\t60\tIN\tTXT\t\"\"",
		"_services._dns-sd._udp." + d + "\t60\tIN\tPTR\t_ssh._tcp." + d,
		"_http._tcp." + d + "\t60\tIN\tPTR\tlaptop._http._tcp." + d,
		"laptop._http._tcp." + d + "\t60\tIN\tSRV\t0 0 8080 laptop." + d,
		"laptop._http._tcp." + d + "\t60\tIN\tTXT\t\"path=/\" \"x=\\\"1\\\"\"",
		"_services._dns-sd._udp." + d + "\t60\tIN\tPTR\t_http._tcp." + d,
	}
	got := texts(recs[6:])
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("service records:\n%s\nwant:\n%s", join(got), join(want))
	}
	for _, rr := range recs {
		if _, err := dns.NewRR(rr.String()); err != nil {
			t.Errorf("%v: %v", rr, err)
		}
	}
}

// The removal deletes the host's instances (their whole names: the host's
// own) and only its own PTR in each type's list, never the list.
func TestServiceRemoveMessage(t *testing.T) {
	h := withServices(laptop(), "ssh")
	m := h.remove()
	var got []string
	for _, rr := range m.Ns {
		got = append(got, rr.String())
		if rr.Header().Class == dns.ClassANY && rr.Header().Rrtype == dns.TypePTR {
			t.Errorf("deletes a PTR RRset: %v", rr)
		}
		if rr.Header().Class == dns.ClassANY && strings.HasPrefix(rr.Header().Name, "_") && rr.Header().Name != h.SRVName() {
			t.Errorf("deletes a shared name: %v", rr)
		}
	}
	s := strings.Join(got, "\n")
	for _, want := range []string{
		"laptop._ssh._tcp.alice.members.example.com.\t0\tCLASS255\tANY",
		"_ssh._tcp.alice.members.example.com.\t0\tNONE\tPTR\tlaptop._ssh._tcp.alice.members.example.com.",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("removal lacks %q:\n%s", want, s)
		}
	}
	u := h.unlistTypes([]string{"_ssh._tcp"})
	if len(u) != 1 || len(u[0].Answer) != 1 || u[0].Answer[0].Header().Class != dns.ClassNONE || u[0].Answer[0].Header().Name != "_ssh._tcp.alice.members.example.com." ||
		len(u[0].Ns) != 1 || u[0].Ns[0].Header().Class != dns.ClassNONE || u[0].Ns[0].(*dns.PTR).Ptr != "_ssh._tcp.alice.members.example.com." {
		t.Errorf("unlist: %v", u)
	}
}

// Against a server: the desktop also offers ssh. The laptop publishes ssh
// and http, then drops http (its instance goes, and the type from the
// enumeration, which no one else offers), then stops (its ssh instance
// goes; the desktop's stays, and so does _ssh._tcp in the enumeration).
func TestPublishServices(t *testing.T) {
	const d = "alice.members.example.com."
	desktop := []string{
		"_ssh._tcp." + d + " 60 IN PTR desktop._ssh._tcp." + d,
		"desktop._ssh._tcp." + d + " 60 IN SRV 0 0 22 desktop." + d,
		"_services._dns-sd._udp." + d + " 60 IN PTR _ssh._tcp." + d,
	}
	s := newUpdateServer(t, "tcp", nil)
	s.set(func(s *updateServer) {
		s.grant = 3600
		for _, r := range desktop {
			s.zone = append(s.zone, mustRR(t, r))
		}
	})
	p := newPublisher(s, "tcp", time.Hour)
	stop := run(t, p)
	h := withServices(laptop(), "ssh", "http:8080 path=/")
	p.Set(h)
	has := func(rr string) bool { return slices.Contains(s.records(), mustRR(t, rr).String()) }
	httpType := "_services._dns-sd._udp." + d + " 60 IN PTR _http._tcp." + d
	waitFor(t, "the services", func() bool { return has(httpType) && has("laptop._ssh._tcp."+d+" 60 IN TXT \"\"") })

	p.Set(withServices(laptop(), "ssh"))
	waitFor(t, "http to go", func() bool { return !has(httpType) })
	for _, rr := range s.records() {
		if strings.Contains(rr, "_http._tcp") {
			t.Errorf("left after http was dropped: %s", rr)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := texts(nil)
	for _, r := range desktop {
		want = append(want, mustRR(t, r).String())
	}
	slices.Sort(want)
	if got := s.records(); !slices.Equal(got, want) {
		t.Errorf("after the stop:\n%s\nwant the desktop's only:\n%s", join(got), join(want))
	}
}
