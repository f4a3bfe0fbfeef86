package test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/test/coredns"
	"github.com/openbtmm/btmm/test/lab"
)

// busConfig is a private system bus for one avahi-daemon: anyone may own
// and call anything (it is reached only through its socket in the test's
// directory).
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// avahiConfig browses alice's domain over wide-area DNS-SD (unicast DNS to
// the nameservers of /etc/resolv.conf: the namespace's, from SetResolver),
// and publishes nothing.
const avahiConfig = `[server]
use-ipv4=yes
use-ipv6=yes
browse-domains=alice.members.example.com
enable-dbus=yes
[wide-area]
enable-wide-area=yes
[publish]
disable-publishing=yes
[reflector]
enable-reflector=no
`

// startProc starts a long-running command in ns that is killed when the
// test ends.
func startProc(t *testing.T, l *lab.Lab, ns string, env []string, name string, args ...string) *coredns.Output {
	t.Helper()
	out := &coredns.Output{}
	cmd := l.Exec(ns, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return out
}

// TestLabAvahi: Debian's avahi-daemon with wide-area browsing, on a host
// of its own in the cafe whose resolver is the lab's server, lists the
// desktop's ssh and HTTP services in alice's domain (avahi-browse -d
// alice.members.example.com -r -t -p -k), resolved to the desktop's name, tunnel
// address and port: what a stock DNS-SD client sees of what btmm-client
// publishes.
func TestLabAvahi(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: map[string]string{"hostA": "homeA", "hostB": "homeB", "hostC": "cafe"}})
	lab.Require(t, "avahi-daemon", "avahi-daemon", "avahi-browse", "avahi-utils", "dbus-daemon", "dbus")
	dir := t.TempDir()
	s := labServer(t, l, dir)
	desktop := startClient(t, l, dir, "hostA", "desktop", "--set", "services=ssh,http:8080 path=/")
	defer func() {
		if t.Failed() {
			t.Logf("desktop:\n%s", desktop.out.String())
		}
	}()
	var ula netip.Addr
	for deadline := time.Now().Add(10 * time.Second); !ula.IsValid(); time.Sleep(20 * time.Millisecond) {
		for _, rr := range labQuery(t, l, s, desktop.name, dns.TypeAAAA).Answer {
			ula, _ = netip.AddrFromSlice(rr.(*dns.AAAA).AAAA)
		}
		if time.Now().After(deadline) {
			t.Fatal("the desktop did not publish")
		}
	}

	if err := l.SetResolver("hostC", []netip.Addr{l.Addr("server")}); err != nil {
		t.Fatal(err)
	}
	bus := filepath.Join(dir, "bus")
	busConf := filepath.Join(dir, "bus.conf")
	os.WriteFile(busConf, []byte(fmt.Sprintf(busConfig, bus)), 0o644)
	busOut := startProc(t, l, "hostC", nil, lab.LookPath("dbus-daemon"), "--config-file="+busConf, "--nofork", "--nopidfile")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(bus); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no bus socket:\n%s", busOut.String())
		}
	}
	env := []string{"DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + bus}
	avahiConf := filepath.Join(dir, "avahi-daemon.conf")
	os.WriteFile(avahiConf, []byte(avahiConfig), 0o644)
	// avahi-daemon keeps its PID file and socket in /run/avahi-daemon:
	// a tmpfs there of its own, in the mount namespace ip netns exec makes
	// for it, so that it does not meet the machine's.
	os.MkdirAll("/run/avahi-daemon", 0o755)
	avahi := startProc(t, l, "hostC", env, "sh", "-c", "mount -t tmpfs tmpfs /run/avahi-daemon && exec "+lab.LookPath("avahi-daemon")+" -f "+avahiConf+" --no-drop-root --no-chroot --no-rlimits --debug")
	defer func() {
		if t.Failed() {
			t.Logf("avahi-daemon:\n%s", avahi.String())
		}
	}()

	var out []byte
	var err error
	start := time.Now()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		cmd := l.Exec("hostC", lab.LookPath("avahi-browse"), "-d", "alice.members.example.com", "-r", "-t", "-p", "-k", "_ssh._tcp")
		cmd.Env = append(os.Environ(), env...)
		out, err = cmd.CombinedOutput()
		if err == nil && strings.Contains(string(out), "\n=;") || strings.HasPrefix(string(out), "=;") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("avahi-browse -d alice.members.example.com -r -t -p -k _ssh._tcp: %v\n%s", err, out)
		}
	}
	t.Logf("avahi-browse (%v after avahi-daemon started):\n%s", time.Since(start).Round(time.Millisecond), out)
	// =;IFACE;PROTO;NAME;TYPE;DOMAIN;HOST;ADDRESS;PORT;TXT
	found := false
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ";")
		if len(f) >= 10 && f[0] == "=" && f[3] == "desktop" && f[4] == "_ssh._tcp" {
			found = true
			if f[5] != "alice.members.example.com" || f[6] != "desktop.alice.members.example.com" || f[8] != "22" {
				t.Errorf("avahi resolved %q", line)
			}
			if a, err := netip.ParseAddr(f[7]); err == nil && a != ula {
				t.Errorf("avahi resolved the desktop to %v, want its tunnel address %v", a, ula)
			}
		}
	}
	if !found {
		t.Errorf("avahi-browse does not list desktop's ssh:\n%s", out)
	}
	cmd := l.Exec("hostC", lab.LookPath("avahi-browse"), "-d", "alice.members.example.com", "-r", "-t", "-p", "-k", "_http._tcp")
	cmd.Env = append(os.Environ(), env...)
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), ";desktop;_http._tcp;alice.members.example.com;desktop.alice.members.example.com;") || !strings.Contains(string(out), `;8080;"path=/"`) {
		t.Errorf("avahi-browse _http._tcp: %v\n%s", err, out)
	}
}
