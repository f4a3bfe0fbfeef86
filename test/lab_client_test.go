package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/daemon"
	"github.com/openbtmm/btmm/test/coredns"
	"github.com/openbtmm/btmm/test/lab"
)

// labServer runs bin/coredns in the lab's server namespace: plain DNS on
// 53 for discovery, updates over TLS on 853, LLQs over TLS on 5353, DNS
// Push over TLS on 8853 (so clients with push = "auto" use it), short
// update leases (at most 20 s) so that a killed client's records go soon.
func labServer(t *testing.T, l *lab.Lab, dir string) *coredns.Server {
	t.Helper()
	return labServerLeases(t, l, dir, 20*time.Second)
}

// labServerLeases is labServer with update leases of at most maxLease.
func labServerLeases(t *testing.T, l *lab.Lab, dir string, maxLease time.Duration) *coredns.Server {
	t.Helper()
	ip := l.Addr("server")
	cert, key := writeLabCert(t, dir, ip)
	return startLabServerLeases(t, l, dir, maxLease, fmt.Sprintf(`tsig-update {
		tls :853 %s %s
	}
	srv-discovery {
		update ns1.members.example.com. 853 tls
		llq    ns1.members.example.com. 5353 tls
		push   ns1.members.example.com. 8853
	}
	llq {
		udp :5352
		tcp :5352
		tls :5353 %s %s
	}
	dns-push {
		tls :8853 %s %s
	}`, cert, key, cert, key, cert, key))
}

// labPushPort is where labServer serves DNS Push.
const labPushPort = 8853

// labPlainServer is labServer without TLS: updates on UDP and TCP 5301,
// LLQs on UDP and TCP 5352, and the plain SRV names pointing at them.
func labPlainServer(t *testing.T, l *lab.Lab, dir string) *coredns.Server {
	t.Helper()
	return startLabServer(t, l, dir, `tsig-update {
		udp :5301
		tcp :5301
	}
	srv-discovery {
		update ns1.members.example.com. 5301
		llq    ns1.members.example.com. 5352
	}
	llq {
		udp :5352
		tcp :5352
	}`)
}

// startLabServer runs the zone with the given tsig-update, srv-discovery
// and llq blocks in the server namespace.
func startLabServer(t *testing.T, l *lab.Lab, dir, listeners string) *coredns.Server {
	t.Helper()
	return startLabServerLeases(t, l, dir, 20*time.Second, listeners)
}

// startLabServerLeases is startLabServer with update leases of at most
// maxLease (20 s there, so that a killed client's records go soon).
func startLabServerLeases(t *testing.T, l *lab.Lab, dir string, maxLease time.Duration, listeners string) *coredns.Server {
	t.Helper()
	ip := l.Addr("server")
	writeKeys(t, dir, alice, bob)
	cf := fmt.Sprintf(`members.example.com:53 {
	btmm members.example.com {
		keys users.keys
		store members.db
		ns ns1.members.example.com. %s
	}
	ddul-lease {
		min 5s
		max %v
		default 20s
	}
	%s
}
`, ip, maxLease, listeners)
	s := coredns.New(t, dir, cf)
	s.Port, s.Host = 53, ip.String()
	s.Command = func(name string, args ...string) *exec.Cmd { return l.Exec("server", name, args...) }
	s.Probe = func(check func() error) error { return l.Go("server", check) }
	s.Start(zone)
	return s
}

func writeLabCert(t *testing.T, dir string, ip netip.Addr) (string, string) {
	t.Helper()
	cert, key, _ := writeCertFor(t, dir, net.IP(ip.AsSlice()))
	return cert, key
}

// labClient is one bin/btmm-client run in a host namespace.
type labClient struct {
	t      *testing.T
	name   string // the host name in the zone
	ns     string
	config string
	socket string
	args   []string // more arguments of run
	prefix []string // a command that runs btmm-client (setpriv ...); none: as root
	cmd    *exec.Cmd
	out    *coredns.Output
	done   chan struct{}
}

// startClient starts btmm-client run in namespace ns as host; runArgs are
// added to run's arguments.
func startClient(t *testing.T, l *lab.Lab, dir, ns, host string, runArgs ...string) *labClient {
	t.Helper()
	return startUserClient(t, l, dir, ns, host, alice, runArgs...)
}

// startUserClient is startClient for a host of the user whose key is key.
func startUserClient(t *testing.T, l *lab.Lab, dir, ns, host string, key testKey, runArgs ...string) *labClient {
	t.Helper()
	c := newUserClient(t, l, dir, ns, host, key, runArgs...)
	c.start(l)
	return c
}

// newUserClient writes the configuration of a client, to start.
func newUserClient(t *testing.T, l *lab.Lab, dir, ns, host string, key testKey, runArgs ...string) *labClient {
	t.Helper()
	user := strings.TrimSuffix(key.name, "."+zone)
	state := filepath.Join(dir, host)
	os.MkdirAll(state, 0o700)
	c := &labClient{t: t, name: host + "." + key.name, ns: ns, config: filepath.Join(state, "client.toml"), socket: filepath.Join(state, "status.sock"), args: runArgs}
	keyFile := filepath.Join(state, user+".key")
	os.WriteFile(keyFile, []byte(key.block()), 0o600)
	conf := fmt.Sprintf(`zone = "members.example.com"
user = %q
host = %q
key = %q
state_dir = %q
server = "%s:53"
transport = "tls"
tls_ca = %q
status_socket = %q
lease = "30s"
llq_lease = "15m"
`, user, host, keyFile, state, l.Addr("server"), filepath.Join(dir, "cert.pem"), c.socket)
	os.WriteFile(c.config, []byte(conf), 0o600)
	return c
}

func (c *labClient) start(l *lab.Lab) {
	c.out = &coredns.Output{}
	args := append([]string{coredns.Built(c.t, "btmm-client"), "run", "--config", c.config}, c.args...)
	args = append(append([]string(nil), c.prefix...), args...)
	c.cmd = l.Exec(c.ns, args[0], args[1:]...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.done = make(chan struct{})
	go func() { c.cmd.Wait(); close(c.done) }()
	c.t.Cleanup(func() { c.kill() })
}

// stop ends the client cleanly (SIGTERM) and waits for it.
func (c *labClient) stop() {
	c.t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		c.t.Fatalf("%s did not stop on SIGTERM:\n%s", c.name, c.out.String())
	}
}

// kill ends it as a crash would.
func (c *labClient) kill() {
	select {
	case <-c.done:
	default:
		c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *labClient) status() (daemon.Status, error) { return daemon.Fetch(c.socket) }

// waitPeer waits until c's peer table shows host reachable at public, and
// returns when that was seen.
func (c *labClient) waitPeer(host string, public netip.AddrPort, within time.Duration) time.Time {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if st, err := c.status(); err == nil {
			for _, p := range st.Peers {
				if p.Host == host && p.Public == public {
					return time.Now()
				}
			}
		}
		if time.Now().After(deadline) {
			st, _ := c.status()
			c.t.Fatalf("%s does not see %s at %s within %v; its peers: %+v\n%s", c.name, host, public, within, st.Peers, c.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// labQuery asks the server from inside its namespace.
func labQuery(t *testing.T, l *lab.Lab, s *coredns.Server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	var r *dns.Msg
	err := l.Go("server", func() error {
		var err error
		r, _, err = (&dns.Client{Timeout: 2 * time.Second}).Exchange(new(dns.Msg).SetQuestion(name, qtype), s.Addr())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestClientsBehindNATs: two hosts of alice behind two NATs register with
// their NAT's address and mapped port, see each other within 2 s, follow
// a NAT's new address by push, get their mapping back after a NAT reboot,
// and leave nothing behind when stopped, or when killed, once their lease
// ends.
func TestClientsBehindNATs(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	dir := t.TempDir()
	s := labServer(t, l, dir)

	desktop := startClient(t, l, dir, "hostA", "desktop")
	start := time.Now()
	laptop := startClient(t, l, dir, "hostB", "laptop")
	defer func() {
		if t.Failed() {
			for _, c := range []*labClient{desktop, laptop} {
				st, _ := c.status()
				t.Logf("%s: tunnels %+v\n%s", c.name, st.Tunnels, c.out.String())
			}
			for _, r := range []string{"routerA", "routerB"} {
				ct, _ := l.Exec(r, "conntrack", "-L", "-p", "udp").CombinedOutput()
				rs, _ := l.Exec(r, "nft", "list", "ruleset").CombinedOutput()
				t.Logf("%s:\n%s\n%s", r, ct, rs)
			}
		}
	}()
	wanA := netip.AddrPortFrom(l.WAN("routerA"), 4500)
	wanB := netip.AddrPortFrom(l.WAN("routerB"), 4500)
	seenA := laptop.waitPeer(desktop.name, wanA, 5*time.Second)
	seenB := desktop.waitPeer(laptop.name, wanB, 5*time.Second)
	t.Logf("each sees the other %v and %v after the second started", seenA.Sub(start), seenB.Sub(start))
	if d := max(seenA.Sub(start), seenB.Sub(start)); d > 2*time.Second {
		t.Errorf("the hosts saw each other %v after the second started, want within 2 s", d)
	}

	// btmm-client status, as a user reads it and as a script does.
	client := coredns.Built(t, "btmm-client")
	human, err := exec.Command(client, "status", "--socket", laptop.socket).CombinedOutput()
	if err != nil || !strings.Contains(string(human), desktop.name) || !strings.Contains(string(human), wanA.String()) || !strings.Contains(string(human), "1 peers") {
		t.Fatalf("btmm-client status: %v\n%s", err, human)
	}
	js, err := exec.Command(client, "status", "--socket", laptop.socket, "--json").Output()
	var st daemon.Status
	if err != nil || json.Unmarshal(js, &st) != nil || len(st.Peers) != 1 || st.Peers[0].Public != wanA || st.Mapping.External != wanB.String() {
		t.Fatalf("btmm-client status --json: %v\n%s", err, js)
	}

	// The server holds the records, with each NAT's address and port.
	for _, c := range []struct {
		host string
		wan  netip.AddrPort
	}{{"desktop", wanA}, {"laptop", wanB}} {
		srv := labQuery(t, l, s, "_autotunnel._udp."+c.host+".alice.members.example.com.", dns.TypeSRV)
		if len(srv.Answer) != 1 || srv.Answer[0].(*dns.SRV).Port != c.wan.Port() {
			t.Fatalf("%s's SRV: %v", c.host, srv)
		}
		a := labQuery(t, l, s, srv.Answer[0].(*dns.SRV).Target, dns.TypeA)
		if len(a.Answer) != 1 || a.Answer[0].(*dns.A).A.String() != c.wan.Addr().String() {
			t.Fatalf("%s's A: %v, want %v", c.host, a, c.wan.Addr())
		}
	}

	// homeA's NAT gets a new external address and announces it: the
	// desktop republishes, the laptop hears by push. Ten times, a second
	// apart: miniupnpd can miss the signal that makes it announce when it
	// comes in the middle of a request, and a real NAT's address does not
	// change ten times a second.
	var took []time.Duration
	for i := range 10 {
		time.Sleep(time.Second)
		next := netip.AddrFrom4([4]byte{23, 1, 1, byte(100 + i)})
		changed := time.Now()
		if err := l.SetWAN("routerA", next); err != nil {
			t.Fatal(err)
		}
		seen := laptop.waitPeer(desktop.name, netip.AddrPortFrom(next, 4500), 10*time.Second)
		took = append(took, seen.Sub(changed))
	}
	slices.Sort(took)
	t.Logf("NAT address change to the peer's table, 10 runs: median %v, worst %v", took[len(took)/2], took[len(took)-1])

	// homeB's NAT reboots (a new epoch, its mappings forgotten): the
	// laptop's mapping is back within 5 s.
	if err := l.RestartNAT("routerB", true); err != nil {
		t.Fatal(err)
	}
	rebooted := time.Now()
	for !strings.Contains(readFile(l.LeaseFile("routerB")), "4500") {
		if time.Since(rebooted) > 5*time.Second {
			t.Fatalf("the laptop's mapping is not back 5 s after the NAT rebooted:\n%s", laptop.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("mapping back %v after the NAT reboot", time.Since(rebooted))
	// And the peers' view: the desktop reaches the laptop through the
	// tunnel, in through the rebooted NAT's new mapping.
	laptopULA := desktop.peerULA(laptop.name)
	for l.Exec("hostA", "ping", "-6", "-c", "1", "-W", "1", laptopULA.String()).Run() != nil {
		if time.Since(rebooted) > 10*time.Second {
			t.Fatalf("the desktop does not reach the laptop through the tunnel 10 s after the laptop's NAT rebooted")
		}
	}
	t.Logf("the desktop reaches the laptop through the tunnel %v after the NAT reboot", time.Since(rebooted).Round(time.Millisecond))

	// The desktop moves to the cafe (a public network, no NAT-PMP): netmon
	// notices, NAT-PMP has no answer, the desktop publishes its own
	// address, and the laptop hears by push.
	if err := l.Move("hostA", "cafe"); err != nil {
		t.Fatal(err)
	}
	moved := time.Now()
	cafe := netip.AddrPortFrom(l.Addr("hostA"), 4500)
	laptop.waitPeer(desktop.name, cafe, 10*time.Second)
	t.Logf("the desktop's move to the cafe (%v) reached the laptop %v later", cafe, time.Since(moved))
	if st, err := desktop.status(); err != nil || !st.Mapping.Public {
		t.Fatalf("the desktop's mapping in the cafe: %+v, %v; want a public network", st.Mapping, err)
	}

	// A clean stop removes the laptop's records and its mapping.
	laptop.stop()
	if r := labQuery(t, l, s, laptop.name, dns.TypeAAAA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("the laptop's records after a clean stop: %v", r)
	}
	if lease := readFile(l.LeaseFile("routerB")); strings.Contains(lease, "4500") {
		t.Fatalf("the laptop's mapping after a clean stop: %q", lease)
	}
	// A killed desktop's records go when their lease (20 s here) ends.
	desktop.kill()
	killed := time.Now()
	for labQuery(t, l, s, desktop.name, dns.TypeAAAA).Rcode != dns.RcodeNameError {
		if time.Since(killed) > 25*time.Second {
			t.Fatal("a killed client's records outlived their lease")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("a killed client's records went %v after the kill", time.Since(killed))
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// peerULA returns host's tunnel address as c's peer table has it.
func (c *labClient) peerULA(host string) netip.Addr {
	c.t.Helper()
	// The peer's records come in one by one: its SRV (and so the peer)
	// may be known a moment before its AAAA.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := c.status()
		if err != nil {
			c.t.Fatal(err)
		}
		for _, p := range st.Peers {
			if p.Host == host && p.ULA.IsValid() {
				return p.ULA
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s has no tunnel address for %s: %+v", c.name, host, st.Peers)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tunnelTo returns c's tunnel status for ula.
func (c *labClient) tunnelTo(ula netip.Addr) (daemon.TunnelStatus, bool) {
	st, err := c.status()
	if err != nil {
		return daemon.TunnelStatus{}, false
	}
	for _, tu := range st.Tunnels {
		if tu.ULA == ula {
			return tu, true
		}
	}
	return daemon.TunnelStatus{}, false
}

// startPeers starts two of alice's hosts, hostNameA on hostA (behind NAT
// A) and hostNameB on hostB (behind NAT B), each with its run arguments;
// shows their output if the test fails; and waits until each lists the
// other at its NAT's address and mapped port.
func startPeers(t *testing.T, l *lab.Lab, dir, hostNameA string, argsA []string, hostNameB string, argsB []string) (a, b *labClient) {
	t.Helper()
	a = startClient(t, l, dir, "hostA", hostNameA, argsA...)
	b = startClient(t, l, dir, "hostB", hostNameB, argsB...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s:\n%s", hostNameA, a.out.String())
			t.Logf("%s:\n%s", hostNameB, b.out.String())
		}
	})
	b.waitPeer(a.name, netip.AddrPortFrom(l.WAN("routerA"), 4500), 5*time.Second)
	a.waitPeer(b.name, netip.AddrPortFrom(l.WAN("routerB"), 4500), 5*time.Second)
	return a, b
}

// waitTunnel waits until c's tunnel knows the peer at ula (its route is
// added on the watcher's change, just after the peer table shows it).
func (c *labClient) waitTunnel(ula netip.Addr, within time.Duration) daemon.TunnelStatus {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if tu, ok := c.tunnelTo(ula); ok {
			return tu
		}
		if time.Now().After(deadline) {
			st, _ := c.status()
			c.t.Fatalf("%s has no tunnel to %s: %+v (%s)", c.name, ula, st.Tunnels, st.TunnelError)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTunnelBehindNATs: two hosts of alice behind two NATs reach each
// other's tunnel address with ping, both ways. The ESP-in-UDP crosses two
// real NATs: each router's NAT-PMP mapping of UDP 4500 lets the peer's
// packets in.
func TestTunnelBehindNATs(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	dir := t.TempDir()
	labServer(t, l, dir)

	desktop, laptop := startPeers(t, l, dir, "desktop", []string{"--metrics", "127.0.0.1:9120"}, "laptop", nil)
	wanA := netip.AddrPortFrom(l.WAN("routerA"), 4500)
	wanB := netip.AddrPortFrom(l.WAN("routerB"), 4500)

	desktopULA := laptop.peerULA(desktop.name)
	laptopULA := desktop.peerULA(laptop.name)
	for _, c := range []struct {
		from *labClient
		peer netip.Addr
	}{{desktop, laptopULA}, {laptop, desktopULA}} {
		c.from.waitTunnel(c.peer, 5*time.Second)
		start := time.Now()
		out, err := l.Exec(c.from.ns, "ping", "-6", "-c", "3", "-W", "2", c.peer.String()).CombinedOutput()
		if err != nil {
			t.Fatalf("ping -6 %s from %s: %v\n%s", c.peer, c.from.ns, err, out)
		}
		t.Logf("ping %s from %s (%v):\n%s", c.peer, c.from.ns, time.Since(start).Round(time.Millisecond), out)
	}

	// The desktop's metrics, as Prometheus scrapes them: the mapping, the
	// peer, and bytes through the tunnel both ways.
	conn, err := l.Dial("hostA", "tcp", "127.0.0.1:9120", 5*time.Second)
	if err != nil {
		t.Fatalf("the desktop's metrics: %v", err)
	}
	fmt.Fprint(conn, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	scraped, _ := io.ReadAll(conn)
	conn.Close()
	checkMetrics(t, "the desktop's /metrics", scraped)
	for _, want := range []string{"btmm_client_mapping_up 1", "btmm_client_peers 1",
		`btmm_client_tunnel_receive_bytes_total{peer="` + laptopULA.String() + `"}`,
		`btmm_client_tunnel_transmit_bytes_total{peer="` + laptopULA.String() + `"}`} {
		if !strings.Contains(string(scraped), want) {
			t.Errorf("the desktop's /metrics lacks %q:\n%s", want, scraped)
		}
	}
	for _, line := range strings.Split(string(scraped), "\n") {
		if strings.HasPrefix(line, "btmm_client_tunnel_receive_bytes_total") && strings.HasSuffix(line, " 0") {
			t.Errorf("no bytes received through the tunnel: %s", line)
		}
	}

	// Both ends show a tunnel to the other with an SA and traffic in, as
	// a script reads it.
	client := coredns.Built(t, "btmm-client")
	for _, c := range []struct {
		from *labClient
		peer netip.Addr
		ep   netip.AddrPort
	}{{desktop, laptopULA, wanB}, {laptop, desktopULA, wanA}} {
		js, err := exec.Command(client, "status", "--socket", c.from.socket, "--json").Output()
		var st daemon.Status
		if err != nil || json.Unmarshal(js, &st) != nil {
			t.Fatalf("btmm-client status --json: %v\n%s", err, js)
		}
		var tu *daemon.TunnelStatus
		for i := range st.Tunnels {
			if st.Tunnels[i].ULA == c.peer {
				tu = &st.Tunnels[i]
			}
		}
		if tu == nil || !tu.HasSA || tu.RxBytes == 0 || tu.TxBytes == 0 || tu.Endpoint != c.ep {
			t.Fatalf("%s's tunnel to %s (at %s): %+v\n%s", c.from.name, c.peer, c.ep, tu, js)
		}
		human, err := exec.Command(client, "status", "--socket", c.from.socket).CombinedOutput()
		if err != nil || !strings.Contains(string(human), "1 tunnels") || !strings.Contains(string(human), c.ep.String()) {
			t.Fatalf("btmm-client status: %v\n%s", err, human)
		}
		t.Logf("%s status:\n%s", c.from.ns, human)
	}
	laptop.stop()
	desktop.stop()
}

// TestPlainTransports: hosts configured with transport "tcp" and "udp"
// register and watch each other through a server without TLS, found by
// the plain SRV names.
func TestPlainTransports(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	dir := t.TempDir()
	labPlainServer(t, l, dir)
	desktop, laptop := startPeers(t, l, dir, "desktop", []string{"--set", "transport=tcp", "--set", "tls_ca="}, "laptop", []string{"--set", "transport=udp", "--set", "tls_ca="})
	for _, c := range []*labClient{desktop, laptop} {
		st, err := c.status()
		if err != nil {
			t.Fatal(err)
		}
		if st.Publish.Error != "" || len(st.Peers) != 1 {
			t.Errorf("%s: publish error %q, %d peers", c.name, st.Publish.Error, len(st.Peers))
		}
	}
}

// waitStatus polls c's status until ok, or fails after within.
func (c *labClient) waitStatus(what string, within time.Duration, ok func(daemon.Status) bool) daemon.Status {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := c.status()
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not %s within %v: %+v\n%s", c.name, what, within, st.Watch, c.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServerDown: the hosts keep each other while the server is down: a
// client restarted meanwhile reaches its peer through the tunnel from its
// cached table, and status says since when the server is unreachable.
// When the server is back, both hosts have each other's current state
// again within 5 s (ten times; the log gives the median).
func TestServerDown(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	dir := t.TempDir()
	s := labServer(t, l, dir)
	desktop, laptop := startPeers(t, l, dir, "desktop", nil, "laptop", nil)
	desktopULA := laptop.peerULA(desktop.name)
	ping := func(from *labClient, to netip.Addr) {
		t.Helper()
		if out, err := l.Exec(from.ns, "ping", "-6", "-c", "1", "-W", "2", to.String()).CombinedOutput(); err != nil {
			t.Fatalf("ping %s from %s: %v\n%s", to, from.name, err, out)
		}
	}
	laptop.waitTunnel(desktopULA, 5*time.Second)
	ping(laptop, desktopULA)

	s.Kill()
	laptop.stop()
	laptop.start(l)
	// The restarted laptop knows the desktop from its cache, and reaches
	// it: it kept its tunnel address and key, by which the desktop, which
	// cannot hear from the server either, still knows it.
	st := laptop.waitStatus("unreachable", 10*time.Second, func(st daemon.Status) bool { return !st.Watch.Since.IsZero() })
	if len(st.Peers) != 1 || st.Peers[0].Host != desktop.name || !st.Watch.Cached {
		t.Fatalf("restarted without a server: peers %+v, watch %+v", st.Peers, st.Watch)
	}
	laptop.waitTunnel(desktopULA, 5*time.Second)
	ping(laptop, desktopULA)
	human, err := exec.Command(coredns.Built(t, "btmm-client"), "status", "--socket", laptop.socket).CombinedOutput()
	if err != nil || !strings.Contains(string(human), "unreachable since") {
		t.Errorf("btmm-client status does not say the server is unreachable: %v\n%s", err, human)
	}

	wanA := netip.AddrPortFrom(l.WAN("routerA"), 4500)
	wanB := netip.AddrPortFrom(l.WAN("routerB"), 4500)
	var took []time.Duration
	for i := range 10 {
		if i > 0 {
			s.Kill()
			for _, c := range []*labClient{desktop, laptop} {
				c.waitStatus("unreachable", 10*time.Second, func(st daemon.Status) bool { return !st.Watch.Since.IsZero() })
			}
		}
		s.Start(zone)
		back := time.Now()
		for _, c := range []*labClient{desktop, laptop} {
			c.waitStatus("back with the server", 5*time.Second, func(st daemon.Status) bool {
				return st.Watch.Mode == "dns-push" && !st.Watch.Cached && st.Watch.Since.IsZero()
			})
		}
		desktop.waitPeer(laptop.name, wanB, 5*time.Second)
		laptop.waitPeer(desktop.name, wanA, 5*time.Second)
		took = append(took, time.Since(back))
	}
	slices.Sort(took)
	t.Logf("server back: both hosts current again after %v (median of 10; %v to %v)", took[5].Round(time.Millisecond), took[0].Round(time.Millisecond), took[9].Round(time.Millisecond))

	// The server down again, the laptop moves to the cafe: a TCP
	// connection through the tunnel carries on (the desktop follows the
	// laptop's authenticated packets), and once the server is back both
	// hosts have each other's current endpoints.
	labEcho(t, l, "hostA", netip.AddrPortFrom(desktopULA, 7000).String())
	conn, err := l.Dial("hostB", "tcp", netip.AddrPortFrom(desktopULA, 7000).String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	roundTrip := func(msg string) {
		t.Helper()
		conn.SetDeadline(time.Now().Add(15 * time.Second))
		fmt.Fprint(conn, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
			t.Fatalf("through the tunnel: %q %v", buf, err)
		}
	}
	roundTrip("before the move")
	s.Kill()
	if err := l.Move("hostB", "cafe"); err != nil {
		t.Fatal(err)
	}
	roundTrip("after the move, with no server")
	laptop.waitStatus("unreachable", 10*time.Second, func(st daemon.Status) bool { return !st.Watch.Since.IsZero() })
	s.Start(zone)
	back := time.Now()
	cafe := netip.AddrPortFrom(l.Addr("hostB"), 4500)
	desktop.waitPeer(laptop.name, cafe, 5*time.Second)
	laptop.waitPeer(desktop.name, wanA, 5*time.Second)
	t.Logf("after a move while the server was down: both hosts current %v after the server's return", time.Since(back).Round(time.Millisecond))
	roundTrip("and still")

	// A server that comes back without the zone (its store lost): the
	// hosts publish again as soon as they are back on it.
	s.Kill()
	for _, f := range []string{"members.db", "members.db.wal"} {
		if err := os.RemoveAll(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	s.Start(zone)
	back = time.Now()
	for _, c := range []*labClient{desktop, laptop} {
		for len(labQuery(t, l, s, c.name, dns.TypeAAAA).Answer) == 0 {
			if time.Since(back) > 5*time.Second {
				t.Fatalf("%s has not published again 5 s after the server came back empty", c.name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("a server back with an empty zone: both hosts published again %v after its return", time.Since(back).Round(time.Millisecond))
}

// TestRootless: a host runs btmm-client as an unprivileged user with no
// capabilities (--userspace: no TUN device). Through its SOCKS5 proxy, curl
// fetches a page that the other host (TUN mode) serves on its tunnel
// address, by the other host's name; the other host reaches the rootless
// one's forwarded port through the tunnel.
func TestRootless(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	lab.Require(t, "setpriv", "util-linux")
	lab.Require(t, "curl", "curl")
	lab.Require(t, "nc", "netcat-openbsd")
	dir := t.TempDir()
	labServer(t, l, dir)
	desktop := startClient(t, l, dir, "hostA", "desktop")

	laptop := newUserClient(t, l, dir, "hostB", "laptop", alice, "--userspace", "--forward", "7000")
	// The unprivileged user reaches its state directory, and nothing else
	// of the test's.
	state := filepath.Dir(laptop.config)
	for _, d := range []string{filepath.Dir(dir), dir} {
		os.Chmod(d, 0o711)
	}
	os.Chmod(filepath.Join(dir, "cert.pem"), 0o644)
	if out, err := exec.Command("chown", "-R", "65534:65534", state).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	laptop.prefix = []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"}
	laptop.start(l)
	defer func() {
		if t.Failed() {
			t.Logf("desktop:\n%s\nlaptop:\n%s", desktop.out.String(), laptop.out.String())
		}
	}()
	laptop.waitPeer(desktop.name, netip.AddrPortFrom(l.WAN("routerA"), 4500), 10*time.Second)
	desktop.waitPeer(laptop.name, netip.AddrPortFrom(l.WAN("routerB"), 4500), 10*time.Second)

	// It runs as nobody, with no capability, and says it is in userspace mode.
	proc, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", laptop.cmd.Process.Pid))
	if err != nil || !strings.Contains(string(proc), "\nUid:\t65534\t") || !strings.Contains(string(proc), "\nCapEff:\t0000000000000000\n") {
		t.Fatalf("the laptop's client is not unprivileged: %v\n%s", err, proc)
	}
	st := laptop.waitStatus("in userspace mode", 5*time.Second, func(st daemon.Status) bool { return st.TunnelMode == "userspace" })
	if st.SOCKSProxy == "" || len(st.Forwarded) != 1 || st.Forwarded[0] != 7000 {
		t.Fatalf("userspace status: %+v", st)
	}

	// A page on the desktop's tunnel address.
	desktopULA := laptop.peerULA(desktop.name)
	var web net.Listener
	if err := l.Go("hostA", func() (err error) {
		web, err = net.Listen("tcp", netip.AddrPortFrom(desktopULA, 8000).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go http.Serve(web, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the desktop to %s", r.RemoteAddr)
	}))
	defer web.Close()
	url := "http://" + strings.TrimSuffix(desktop.name, ".") + ":8000/"
	out, err := l.Exec("hostB", "curl", "-sS", "--max-time", "15", "--socks5-hostname", st.SOCKSProxy, url).CombinedOutput()
	laptopULA := desktop.peerULA(laptop.name)
	if err != nil || !strings.Contains(string(out), "hello from the desktop to ["+laptopULA.String()+"]") {
		t.Fatalf("curl --socks5-hostname %s %s: %v\n%s", st.SOCKSProxy, url, err, out)
	}
	// The way ssh's ProxyCommand goes (nc -X 5 -x PROXY %h %p): OpenBSD
	// netcat through the SOCKS5 proxy, the host by name.
	nc := l.Exec("hostB", "nc", "-X", "5", "-x", st.SOCKSProxy, "-w", "10", strings.TrimSuffix(desktop.name, "."), "8000")
	nc.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
	if out, err := nc.CombinedOutput(); err != nil || !strings.Contains(string(out), "hello from the desktop") {
		t.Fatalf("nc -X 5 -x %s %s 8000: %v\n%s", st.SOCKSProxy, desktop.name, err, out)
	}
	// The same through the HTTP proxy.
	out, err = l.Exec("hostB", "curl", "-sS", "--max-time", "15", "--proxy", "http://"+st.HTTPProxy, url).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello from the desktop") {
		t.Fatalf("curl --proxy http://%s %s: %v\n%s", st.HTTPProxy, url, err, out)
	}

	// The desktop connects to the laptop's forwarded port: an echo server
	// on the laptop's 127.0.0.1:7000.
	labEcho(t, l, "hostB", "127.0.0.1:7000")
	conn, err := l.Dial("hostA", "tcp", netip.AddrPortFrom(laptopULA, 7000).String(), 10*time.Second)
	if err != nil {
		t.Fatalf("the desktop to the laptop's forwarded port: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	msg := "through the tunnel to a rootless host"
	fmt.Fprint(conn, msg)
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo through the forwarded port: %q %v", buf, err)
	}
}

// labEcho runs a TCP echo server on addr in namespace ns until the test
// ends.
func labEcho(t *testing.T, l *lab.Lab, ns, addr string) {
	t.Helper()
	var ln net.Listener
	if err := l.Go(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

// TestClientRestart: a host restarted (stopped cleanly, so its records went
// and came back) reaches its peer through the tunnel again, and is reached,
// five times over; the log gives how soon. The restarted host initiates
// from its cached peers, maybe before its records reach the other, which
// would then refuse it until its punch on learning of the host sends the
// initiation again (tunnel package doc, "Nudges").
func TestClientRestart(t *testing.T) {
	l := lab.Start(t, lab.Options{}, "ping", "iputils-ping")
	dir := t.TempDir()
	labServer(t, l, dir)
	desktop, laptop := startPeers(t, l, dir, "desktop", nil, "laptop", nil)
	desktopULA, laptopULA := laptop.peerULA(desktop.name), desktop.peerULA(laptop.name)
	pingWithin(t, l, laptop, desktopULA, 10*time.Second)
	var took []time.Duration
	for range 5 {
		laptop.stop()
		laptop.start(l)
		start := time.Now()
		pingWithin(t, l, laptop, desktopULA, 20*time.Second)
		took = append(took, time.Since(start))
		pingWithin(t, l, desktop, laptopULA, 5*time.Second)
	}
	slices.Sort(took)
	t.Logf("after a restart, the restarted host's first ping through the tunnel: median %v (%v to %v, 5 restarts)",
		took[2].Round(time.Millisecond), took[0].Round(time.Millisecond), took[4].Round(time.Millisecond))
}
