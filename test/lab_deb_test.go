package test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openbtmm/btmm/client/daemon"
	"github.com/openbtmm/btmm/test/lab"
)

// TestClientWithUnitPrivileges runs the laptop's client with the
// privileges btmm-client.service gives it: an unprivileged user (nobody
// here, btmm-client there) with CAP_NET_ADMIN alone, ambient and in the
// bounding set, and no new privileges. That is enough for its TUN device
// and routes (where /dev/net/tun has udev's mode, 0666): pings go through
// the tunnel both ways.
func TestClientWithUnitPrivileges(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	lab.Require(t, "setpriv", "util-linux")
	dir := t.TempDir()
	labServer(t, l, dir)
	desktop := startClient(t, l, dir, "hostA", "desktop")

	laptop := newUserClient(t, l, dir, "hostB", "laptop", alice)
	// The user reaches its state directory (StateDirectory=) and the CA.
	for _, d := range []string{filepath.Dir(dir), dir} {
		os.Chmod(d, 0o711)
	}
	os.Chmod(filepath.Join(dir, "cert.pem"), 0o644)
	if out, err := exec.Command("chown", "-R", "65534:65534", filepath.Dir(laptop.config)).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	// udev makes /dev/net/tun mode 0666 (50-udev-default.rules), so that
	// a user with CAP_NET_ADMIN opens it; a container without udev may
	// have it 0600. The laptop gets a node of udev's mode over it, in a
	// mount namespace of its own.
	tun := filepath.Join(dir, "tun")
	if out, err := exec.Command("mknod", "-m", "0666", tun, "c", "10", "200").CombinedOutput(); err != nil {
		t.Fatalf("mknod: %v %s", err, out)
	}
	laptop.prefix = []string{"unshare", "--mount", "--propagation", "private",
		"sh", "-c", `mount --bind "$1" /dev/net/tun && shift && exec "$@"`, "sh", tun,
		"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin",
		"--no-new-privs", "--"}
	laptop.start(l)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("desktop:\n%s\nlaptop:\n%s", desktop.out.String(), laptop.out.String())
		}
	})

	laptop.waitStatus("with a TUN device", 10*time.Second, func(st daemon.Status) bool {
		return st.TunnelMode == "tun" && st.TunnelError == "" && len(st.Peers) == 1
	})
	// It runs (by now: ip netns exec and setpriv have exec-ed it) as nobody with CAP_NET_ADMIN (bit 12) and nothing else.
	proc, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", laptop.cmd.Process.Pid))
	for _, want := range []string{"\nUid:\t65534\t", "\nCapEff:\t0000000000001000\n", "\nCapBnd:\t0000000000001000\n", "\nNoNewPrivs:\t1\n"} {
		if err != nil || !strings.Contains(string(proc), want) {
			t.Fatalf("the laptop's client lacks %q: %v\n%s", want, err, proc)
		}
	}
	desktopULA := laptop.peerULA(desktop.name)
	laptopULA := desktop.peerULA(laptop.name)
	for _, c := range []struct {
		from *labClient
		peer netip.Addr
	}{{laptop, desktopULA}, {desktop, laptopULA}} {
		c.from.waitTunnel(c.peer, 5*time.Second)
		if out, err := l.Exec(c.from.ns, "ping", "-6", "-c", "2", "-W", "2", c.peer.String()).CombinedOutput(); err != nil {
			t.Fatalf("ping -6 %s from %s: %v\n%s", c.peer, c.from.ns, err, out)
		}
	}
}
