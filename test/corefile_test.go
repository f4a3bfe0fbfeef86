package test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store/etcdstore/etcdtest"
	"github.com/openbtmm/btmm/test/coredns"
)

// TestExampleCorefiles: the Corefiles in corefile/ start as they are
// (their ports moved to free ones) and serve the zone, the SRV records
// and LLQs.
func TestExampleCorefiles(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	for _, name := range []string{"Corefile", "Corefile.tls"} {
		t.Run(name, func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "corefile", name))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			writeKeys(t, dir, alice)
			writeCert(t, dir) // cert.pem and key.pem, as Corefile.tls names them
			cf := strings.NewReplacer(":5300", ":{{PORT}}", ":8853", ":{{TLSPORT}}", ":5352", ":{{LLQPORT}}", ":8854", ":{{LLQTLSPORT}}", " 5300\n", " {{PORT}}\n", " 5352\n", " {{LLQPORT}}\n", " 8853 tls", " {{TLSPORT}} tls", " 8854 tls", " {{LLQTLSPORT}} tls",
				":5301", ":{{UPDATEPORT}}", " 5301\n", " {{UPDATEPORT}}\n", ":8855", ":{{UPDATETLSPORT}}", " 8855 tls", " {{UPDATETLSPORT}} tls").Replace(string(text))
			s := coredns.New(t, dir, cf)
			s.Start(zone)
			if out, err := nsupdate(t, s, alice, "update add laptop.alice.members.example.com. 60 AAAA fd00::1"); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			r := query(t, s.Addr(), "_dns-llq._udp.alice.members.example.com.", dns.TypeSRV)
			if len(r.Answer) != 1 || int(r.Answer[0].(*dns.SRV).Port) != s.LLQPort {
				t.Fatalf("LLQ SRV: %v, want port %d", r, s.LLQPort)
			}
			if r := query(t, s.LLQAddr(), "laptop.alice.members.example.com.", dns.TypeAAAA); len(r.Answer) != 1 {
				t.Fatalf("the LLQ listener does not answer: %v", r)
			}
		})
	}
}

// TestExampleEtcdCorefile: corefile/Corefile.etcd, pointed at a test
// cluster and free ports, runs as two servers that serve one zone.
func TestExampleEtcdCorefile(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	text, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "corefile", "Corefile.etcd"))
	if err != nil {
		t.Fatal(err)
	}
	cluster := etcdtest.Start(t, 3)
	eps := cluster.Endpoints()
	var servers []*coredns.Server
	for range 2 {
		dir := t.TempDir()
		writeKeys(t, dir, alice)
		cf := strings.NewReplacer(":5300", ":{{PORT}}", ":5301", ":127.0.0.1:{{UPDATEPORT}}", ":5352", ":127.0.0.1:{{LLQPORT}}",
			"http://10.0.0.1:2379", eps[0], "http://10.0.0.2:2379", eps[1], "http://10.0.0.3:2379", eps[2]).Replace(string(text))
		cf = strings.ReplaceAll(cf, "udp :127.0.0.1", "udp 127.0.0.1")
		cf = strings.ReplaceAll(cf, "tcp :127.0.0.1", "tcp 127.0.0.1")
		s := coredns.New(t, dir, cf)
		s.Start(zone)
		servers = append(servers, s)
	}
	if out, err := nsupdate(t, servers[0], alice, "update add laptop.alice.members.example.com. 60 AAAA fd00::1"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r := query(t, servers[1].Addr(), "laptop.alice.members.example.com.", dns.TypeAAAA); len(r.Answer) != 1 {
		t.Fatalf("the second server does not answer the first's update: %v", answers(r))
	}
	r := query(t, servers[1].Addr(), "_dns-update._udp.alice.members.example.com.", dns.TypeSRV)
	if len(r.Answer) != 1 || !strings.HasPrefix(r.Answer[0].(*dns.SRV).Target, "ns") {
		t.Fatalf("update SRV: %v", answers(r))
	}
}
