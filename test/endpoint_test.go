package test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/endpoint"
	pkgendpoint "github.com/openbtmm/btmm/plugin/pkg/endpoint"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// TestServerObservedEndpoint: bin/coredns tells a host, over UDP and
// signed, the address and port its question came from; it refuses an
// unsigned question, another user's key, and TCP.
func TestServerObservedEndpoint(t *testing.T) {
	s := startServer(t, corefile("", ""), alice, bob)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	server := netip.MustParseAddrPort(s.UpdateAddr())
	k := keyfile.Key{Name: alice.name, Algorithm: alice.miekgAlg(), Secret: alice.secret}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ep, err := endpoint.Probe(ctx, endpoint.Socket{Conn: conn}, server, k)
	if want := conn.LocalAddr().(*net.UDPAddr).AddrPort(); err != nil || ep != want {
		t.Fatalf("the observed endpoint: %v, %v; want %v", ep, err, want)
	}

	// The query port answers too, and a host without a NAT sees the
	// same endpoint on both: a mapping independent of the destination.
	query := netip.MustParseAddrPort(s.Addr())
	if _, m, err := endpoint.Classify(ctx, endpoint.Socket{Conn: conn}, []netip.AddrPort{server, query}, k); err != nil || m != endpoint.Independent {
		t.Errorf("Classify over the update and the query port: %v, %v", m, err)
	}

	q := pkgendpoint.Query(alice.name)
	if r := exchangeMsg(t, "udp", s.UpdateAddr(), q); r.Rcode != dns.RcodeRefused {
		t.Errorf("unsigned: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if r, _, _, _ := signed(t, "udp", s.UpdateAddr(), bob, pkgendpoint.Query(alice.name), time.Now()); r.Rcode != dns.RcodeRefused {
		t.Errorf("alice's endpoint asked with bob's key: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if r, _, _, _ := signed(t, "tcp", s.UpdateAddr(), alice, pkgendpoint.Query(alice.name), time.Now()); r.Rcode != dns.RcodeRefused {
		t.Errorf("over TCP: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}

func exchangeMsg(t *testing.T, netw, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(exchangeRaw(t, netw, addr, b)); err != nil {
		t.Fatal(err)
	}
	return r
}
