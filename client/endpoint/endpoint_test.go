package endpoint

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/endpoint"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

var key = keyfile.Key{Name: "alice.members.example.com.", Algorithm: dns.HmacSHA256, Secret: "F42STmDnGmFG1jyejcOLBJFIHgcGsAPxrqiDTI9YerQ="}

// fakeServer answers endpoint questions on loopback the way the server
// does, with reply(observed) as the endpoint, signed with secret.
func fakeServer(t *testing.T, secret string, reply func(netip.AddrPort) netip.AddrPort, drop int) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if drop > 0 {
				drop--
				continue
			}
			r := new(dns.Msg)
			r.Unpack(buf[:n])
			res := tsigauth.CheckRaw(buf[:n], r, func(string) []keyfile.Key { return []keyfile.Key{key} }, time.Now())
			sig := r.IsTsig()
			r.Extra = nil
			m := new(dns.Msg).SetReply(r)
			endpoint.Reply(m, r.Question[0].Name, reply(from.(*net.UDPAddr).AddrPort()))
			res.Key.Secret = secret
			b, _ := tsigauth.PackReply(m, sig, res, time.Now())
			pc.WriteTo([]byte("not DNS"), from) // noise the probe reads past
			pc.WriteTo(b, from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestProbe(t *testing.T) {
	resend = 100 * time.Millisecond
	server := fakeServer(t, key.Secret, func(ap netip.AddrPort) netip.AddrPort { return ap }, 1)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ep, err := Probe(context.Background(), Socket{conn}, server, key)
	if want := conn.LocalAddr().(*net.UDPAddr).AddrPort(); err != nil || ep != want {
		t.Fatalf("Probe = %v, %v; want %v (after one lost question)", ep, err, want)
	}
}

func TestProbeRefusesUnsignedAnswers(t *testing.T) {
	resend = 100 * time.Millisecond
	forged := fakeServer(t, "c2VjcmV0c2VjcmV0c2VjcmV0MTI=", func(netip.AddrPort) netip.AddrPort {
		return netip.MustParseAddrPort("203.0.113.66:1")
	}, 0)
	conn, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer conn.Close()
	if ep, err := Probe(context.Background(), Socket{conn}, forged, key); err == nil {
		t.Fatalf("an answer signed with another secret was taken: %v", ep)
	}
	silent := netip.MustParseAddrPort("127.0.0.1:9") // discard: nothing answers
	if _, err := Probe(context.Background(), Socket{conn}, silent, key); err == nil {
		t.Fatal("a probe of a silent server succeeded")
	}
}

// TestClassify: the same endpoint on both server ports is a mapping
// independent of the destination; two are a dependent one.
func TestClassify(t *testing.T) {
	resend = 100 * time.Millisecond
	same := func(ap netip.AddrPort) netip.AddrPort { return ap }
	a := fakeServer(t, key.Secret, same, 0)
	b := fakeServer(t, key.Secret, same, 0)
	shifted := fakeServer(t, key.Secret, func(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr(), ap.Port()+1) }, 0)
	conn, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer conn.Close()
	ctx := context.Background()
	if _, m, err := Classify(ctx, Socket{conn}, []netip.AddrPort{a, b}, key); err != nil || m != Independent {
		t.Errorf("the same endpoint twice: %v, %v", m, err)
	}
	if _, m, err := Classify(ctx, Socket{conn}, []netip.AddrPort{a, shifted}, key); err != nil || m != Dependent {
		t.Errorf("two endpoints: %v, %v", m, err)
	}
	if ep, m, err := Classify(ctx, Socket{conn}, []netip.AddrPort{a, netip.MustParseAddrPort("127.0.0.1:9")}, key); err != nil || m != Unknown || !ep.IsValid() {
		t.Errorf("one port silent: %v %v, %v", ep, m, err)
	}
}
