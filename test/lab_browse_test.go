package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/browse"
	"github.com/openbtmm/btmm/test/coredns"
	"github.com/openbtmm/btmm/test/lab"
)

// browseEvent is one line of btmm-client browse --json.
type browseEvent struct {
	Event string    `json:"event"`
	Time  time.Time `json:"time"`
	browse.Instance
}

// labBrowser is one `btmm-client browse --json` in a lab namespace.
type labBrowser struct {
	cmd    *exec.Cmd
	stderr *coredns.Output
	mu     sync.Mutex
	events []browseEvent
}

// browserConfig writes a configuration for browse in its own directory,
// owned by nobody (65534), with alice's key: browse needs no root.
func browserConfig(t *testing.T, l *lab.Lab, dir string) string {
	t.Helper()
	state := filepath.Join(dir, "browser")
	os.MkdirAll(state, 0o700)
	keyFile := filepath.Join(state, "alice.key")
	os.WriteFile(keyFile, []byte(alice.block()), 0o600)
	conf := filepath.Join(state, "client.toml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`zone = "members.example.com"
user = "alice"
host = "browser"
key = %q
state_dir = %q
server = "%s:53"
transport = "tls"
tls_ca = %q
`, keyFile, state, l.Addr("server"), filepath.Join(dir, "cert.pem"))), 0o600)
	for _, d := range []string{filepath.Dir(dir), dir} {
		os.Chmod(d, 0o711)
	}
	os.Chmod(filepath.Join(dir, "cert.pem"), 0o644)
	if out, err := exec.Command("chown", "-R", "65534:65534", state).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	return conf
}

var nobody = []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"}

// startBrowse runs btmm-client browse --json as nobody in ns.
func startBrowse(t *testing.T, l *lab.Lab, ns, conf string, args ...string) *labBrowser {
	t.Helper()
	argv := append(append([]string(nil), nobody...), coredns.Built(t, "btmm-client"), "browse", "--config", conf, "--json")
	argv = append(argv, args...)
	b := &labBrowser{stderr: &coredns.Output{}}
	b.cmd = l.Exec(ns, argv[0], argv[1:]...)
	b.cmd.Stderr = b.stderr
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev browseEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("browse --json printed %q: %v", sc.Text(), err)
				continue
			}
			b.mu.Lock()
			b.events = append(b.events, ev)
			b.mu.Unlock()
		}
		close(done)
	}()
	t.Cleanup(func() {
		b.cmd.Process.Signal(syscall.SIGTERM)
		<-done
		b.cmd.Wait()
	})
	return b
}

// wait returns the events, one per (event, type), for the given types
// once all have come.
func (b *labBrowser) wait(t *testing.T, event string, within time.Duration, types ...string) map[string]browseEvent {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := map[string]browseEvent{}
		b.mu.Lock()
		for _, ev := range b.events {
			if ev.Event == event {
				got[ev.Type] = ev
			}
		}
		all := fmt.Sprintf("%+v", b.events)
		b.mu.Unlock()
		n := 0
		for _, ty := range types {
			if _, ok := got[ty]; ok {
				n++
			}
		}
		if n == len(types) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("browse: no %s of %v within %v; events %s\nstderr:\n%s", event, types, within, all, b.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// registered finds when a client's log says it registered its records.
var registeredLine = regexp.MustCompile(`time=(\S+) level=INFO msg="publish: registered`)

func registeredAt(t *testing.T, out string) time.Time {
	t.Helper()
	m := registeredLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no registration in the log:\n%s", out)
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// TestLabBrowse: the desktop (behind NAT A) publishes ssh and an HTTP
// service, and with services_auto the VNC server it listens on;
// `btmm-client browse`, run as nobody on the laptop's network
// (behind NAT B) with no daemon of its own involved, lists them by DNS
// Push within a second of the desktop's registration; a connection to the
// SRV's target name and port, resolved through the server, goes through
// the tunnel (the listener on the desktop's tunnel address sees the
// laptop's tunnel address; the tunnel's byte counters grow); browse
// --once --push=llq lists them by LLQ; when the desktop stops, browse
// shows them gone.
func TestLabBrowse(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	lab.Require(t, "setpriv", "util-linux")
	dir := t.TempDir()
	s := labServer(t, l, dir)
	conf := browserConfig(t, l, dir)

	laptop := startClient(t, l, dir, "hostB", "laptop")
	b := startBrowse(t, l, "hostB", conf)
	// The browser is following before the desktop publishes.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.stderr.String(), "following alice.members.example.com. by dns-push") {
		if time.Now().After(deadline) {
			t.Fatalf("browse does not follow by DNS Push:\n%s", b.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// services_auto: a VNC server on every address is published (rfb), an
	// SMB server on loopback only is not.
	for _, addr := range []string{"[::]:5900", "127.0.0.1:445"} {
		ln, err := l.Listen("hostA", "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
	started := time.Now()
	desktop := startClient(t, l, dir, "hostA", "desktop", "--set", "services=ssh,http:8080 path=/", "--set", "services_auto=true")
	defer func() {
		if t.Failed() {
			t.Logf("desktop:\n%s\nlaptop:\n%s\nbrowse:\n%s", desktop.out.String(), laptop.out.String(), b.stderr.String())
		}
	}()
	got := b.wait(t, "add", 10*time.Second, "_ssh._tcp", "_http._tcp", "_rfb._tcp")
	registered := registeredAt(t, desktop.out.String())
	var last time.Time
	for _, ev := range got {
		if ev.Time.After(last) {
			last = ev.Time
		}
	}
	t.Logf("browse listed the three services %v after the desktop's registration was acknowledged (%v after it started)",
		last.Sub(registered).Round(time.Microsecond), last.Sub(started).Round(time.Millisecond))
	if d := last.Sub(registered); d > time.Second {
		t.Errorf("browse listed the services %v after the registration, want within 1 s", d)
	}
	host := "desktop.alice.members.example.com."
	if ssh := got["_ssh._tcp"]; ssh.Instance.Instance != "desktop" || ssh.Target != host || ssh.Port != 22 || ssh.Name != "desktop._ssh._tcp.alice.members.example.com." {
		t.Errorf("ssh: %+v", ssh)
	}
	if rfb := got["_rfb._tcp"]; rfb.Target != host || rfb.Port != 5900 {
		t.Errorf("rfb (services_auto): %+v", rfb)
	}
	if _, smb := got["_smb._tcp"]; smb {
		t.Error("smb, listening on loopback only, is published")
	}
	if web := got["_http._tcp"]; web.Target != host || web.Port != 8080 || len(web.TXT) != 1 || web.TXT[0] != "path=/" {
		t.Errorf("http: %+v", web)
	}

	// Connect as a user would: the SRV target's AAAA from the server, then
	// its port. A listener on the desktop's tunnel address, port 22.
	ssh := got["_ssh._tcp"]
	var ula netip.Addr
	if err := l.Go("hostB", func() error {
		r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(new(dns.Msg).SetQuestion(ssh.Target, dns.TypeAAAA), s.Addr())
		if err != nil {
			return err
		}
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.AAAA); ok {
				ula, _ = netip.AddrFromSlice(a.AAAA)
			}
		}
		return nil
	}); err != nil || !ula.IsValid() {
		t.Fatalf("%s AAAA: %v %v", ssh.Target, ula, err)
	}
	ln, err := l.Listen("hostA", "tcp", net.JoinHostPort(ula.String(), fmt.Sprint(ssh.Port)))
	if err != nil {
		t.Fatalf("listening on the desktop's tunnel address: %v", err)
	}
	defer ln.Close()
	laptopULA := desktop.peerULA(laptop.name)
	laptop.waitTunnel(ula, 5*time.Second)
	before, _ := laptop.tunnelTo(ula)
	from := make(chan net.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		from <- c.RemoteAddr()
		c.Write([]byte("SSH-2.0-lab\r\n"))
		c.Close()
	}()
	c, err := l.Dial("hostB", "tcp", net.JoinHostPort(ula.String(), fmt.Sprint(ssh.Port)), 5*time.Second)
	if err != nil {
		t.Fatalf("connecting to %s:%d from the laptop: %v", ssh.Target, ssh.Port, err)
	}
	banner, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	src := (<-from).(*net.TCPAddr)
	if a, _ := netip.AddrFromSlice(src.IP); a.Unmap() != laptopULA || banner != "SSH-2.0-lab\r\n" {
		t.Errorf("the listener saw %v (want the laptop's tunnel address %v), banner %q", src, laptopULA, banner)
	}
	after, _ := laptop.tunnelTo(ula)
	if after.TxBytes <= before.TxBytes || after.RxBytes <= before.RxBytes {
		t.Errorf("the tunnel's counters did not grow: before %+v, after %+v", before, after)
	}
	t.Logf("connected to %s port %d from %v through the tunnel (tunnel tx %d → %d, rx %d → %d octets)", ssh.Target, ssh.Port, src, before.TxBytes, after.TxBytes, before.RxBytes, after.RxBytes)

	// browse --once by LLQ, one type given by its short name.
	once := append(append([]string(nil), nobody...), coredns.Built(t, "btmm-client"), "browse", "--config", conf, "--once", "--push=llq", "ssh")
	out, err := l.Exec("hostB", once[0], once[1:]...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "by llq") || !strings.Contains(string(out), "+ desktop  _ssh._tcp  desktop.alice.members.example.com.:22\n") || strings.Contains(string(out), "_http") {
		t.Errorf("browse --once --push=llq ssh: %v\n%s", err, out)
	}

	// The desktop stops: its services go.
	stopped := time.Now()
	desktop.stop()
	gone := b.wait(t, "remove", 5*time.Second, "_ssh._tcp", "_http._tcp", "_rfb._tcp")
	t.Logf("browse showed them gone %v after the desktop stopped", gone["_ssh._tcp"].Time.Sub(stopped).Round(time.Millisecond))
	if r := labQuery(t, l, s, "_services._dns-sd._udp.alice.members.example.com.", dns.TypePTR); len(r.Answer) != 0 {
		t.Errorf("the service types are still listed: %v", r.Answer)
	}
}
