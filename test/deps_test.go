package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDepsDryRun runs .ci/deps --dry-run with a PATH of the test's own,
// where only the tools a case names are, and checks that it names exactly
// the Debian packages of the missing ones and prints the commands it would
// run, and runs none of them.
func TestDepsDryRun(t *testing.T) {
	// Every tool .ci/deps looks for, as it finds them on PATH.
	all := []string{"nsupdate", "kdig", "tsig-keygen", "make", "knotd", "dnsperf",
		"nft", "miniupnpd", "natpmpc", "ip", "ping",
		"iperf3", "tshark", "curl", "nc", "setpriv", "systemd-analyze", "avahi-daemon", "avahi-browse", "dbus-daemon", "promtool"}
	except := func(missing ...string) []string {
		var have []string
		for _, tool := range all {
			if !contains(missing, tool) {
				have = append(have, tool)
			}
		}
		return have
	}
	sudo := "sudo "
	if os.Geteuid() == 0 {
		sudo = ""
	}
	install := sudo + "apt-get update -qq\n" + sudo + "env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
	promtool := "apt-get download prometheus\n" +
		"dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool\n" +
		"install -m 0755 usr/bin/promtool bin/promtool\n"
	for _, c := range []struct {
		name string
		args []string
		have []string // tools on PATH
		out  string   // what it prints on standard output: the commands
		said string   // and a line of what it says on standard error
	}{
		{"lab, on a bare machine", []string{"lab"}, nil,
			install + "nftables miniupnpd miniupnpd-nftables natpmpc iproute2 iputils-ping\n",
			"Would install the Debian packages missing here: nftables miniupnpd miniupnpd-nftables natpmpc iproute2 iputils-ping"},
		{"lab, with NAT-PMP and ping", []string{"lab"}, []string{"natpmpc", "ping", "miniupnpd"},
			install + "nftables iproute2\n",
			"Would install the Debian packages missing here: nftables iproute2"},
		{"lab, with all it needs", []string{"lab"}, except("nsupdate", "systemd-analyze", "promtool"),
			"", "Nothing is missing here."},
		{"all, on a bare machine", nil, nil,
			install + "bind9-dnsutils knot-dnsutils bind9 make knot dnsperf nftables miniupnpd miniupnpd-nftables natpmpc iproute2 iputils-ping iperf3 tshark curl netcat-openbsd util-linux systemd avahi-daemon avahi-utils dbus\n" + promtool,
			"promtool is missing here: would take it out of Debian's prometheus package into bin/promtool"},
		{"all, without kdig and systemd-analyze", nil, except("kdig", "systemd-analyze"),
			install + "knot-dnsutils systemd\n",
			"Would install the Debian packages missing here: knot-dnsutils systemd"},
		{"all, without promtool", nil, except("promtool"),
			sudo + "apt-get update -qq\n" + promtool,
			"promtool is missing here: would take it out of Debian's prometheus package into bin/promtool"},
		{"all, with everything", nil, all, "", "Nothing is missing here."},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, said := dryRun(t, c.have, c.args...)
			if out != c.out {
				t.Errorf("it would run\n%s\nwant\n%s", out, c.out)
			}
			if !strings.Contains(said, c.said+"\n") {
				t.Errorf("it says\n%s\nwant the line %q", said, c.said)
			}
		})
	}
}

// dryRun runs a copy of .ci/deps --dry-run (so that the repository's own
// bin/promtool is not found) with a PATH of two directories, bin and sbin,
// that hold only the shell and id, which the script itself runs, and a
// stand-in for each tool in have. Stand-ins for apt-get, sudo and dpkg-deb
// record it if they are run.
func dryRun(t *testing.T, have []string, args ...string) (stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	bin, sbin := filepath.Join(dir, "bin"), filepath.Join(dir, "sbin")
	for _, d := range []string{bin, sbin, filepath.Join(dir, ".ci")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := os.ReadFile(filepath.Join(repoTop(t), ".ci", "deps"))
	if err != nil {
		t.Fatal(err)
	}
	deps := filepath.Join(dir, ".ci", "deps")
	if err := os.WriteFile(deps, script, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"bash", "id"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		if err := os.Symlink(path, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	ran := filepath.Join(dir, "ran")
	stand := func(d, name string) {
		t.Helper()
		s := "#!/bin/sh\necho " + name + " >>" + ran + "\n"
		if err := os.WriteFile(filepath.Join(d, name), []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, tool := range have {
		stand([]string{bin, sbin}[i%2], tool) // both directories count
	}
	for _, tool := range []string{"apt-get", "sudo", "dpkg-deb", "env"} {
		stand(bin, tool)
	}
	cmd := exec.Command(deps, append([]string{"--dry-run"}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+sbin)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf(".ci/deps --dry-run %s: %v\n%s%s", strings.Join(args, " "), err, o.String(), e.String())
	}
	if b, err := os.ReadFile(ran); err == nil {
		t.Errorf("a dry run ran:\n%s", b)
	}
	return o.String(), e.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
