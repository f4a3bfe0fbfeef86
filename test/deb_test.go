package test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openbtmm/btmm/client/config"
	"github.com/openbtmm/btmm/test/coredns"
)

// repoTop is the repository's top directory.
func repoTop(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// TestDebPackages builds the Debian packages with `make deb` at two
// versions and, with dpkg, installs the first into a scratch root (dpkg
// --root, its maintainer scripts run chrootless with DPKG_ROOT set, so they
// leave this system's users and services alone), checks the files, their
// modes, the conffiles and the unit files (systemd-analyze verify),
// upgrades to the second over planted state, and removes and purges.
func TestDebPackages(t *testing.T) {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (dpkg installs files owned by root)")
	}
	for _, tool := range []struct{ name, pkg string }{{"dpkg", "dpkg"}, {"dpkg-query", "dpkg"}, {"make", "make"}} {
		if _, err := exec.LookPath(tool.name); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", tool.name, tool.pkg))
		}
	}
	if len(missing) > 0 {
		msg := "the Debian packages' test needs " + strings.Join(missing, "; ")
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	// make deb, twice: the upgrade needs a higher version.
	top := repoTop(t)
	debs := map[string][]string{}
	for _, v := range []string{"1.0", "1.1"} {
		out := t.TempDir()
		cmd := exec.Command("make", "-s", "-C", top, "deb", "DEB_VERSION="+v, "DEB_OUT="+out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make deb DEB_VERSION=%s: %v\n%s", v, err, b)
		}
		for _, name := range []string{"btmm-server", "btmm-client"} {
			debs[v] = append(debs[v], filepath.Join(out, name+"_"+v+"_"+runtime.GOARCH+".deb"))
		}
	}

	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg := func(args ...string) string {
		t.Helper()
		// The scratch root has no adduser or libc6 in its database: the
		// dependencies are this system's business, not the test's.
		cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	query := func(format, pkg string) string {
		t.Helper()
		out, _ := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f="+format, pkg).Output()
		return string(out)
	}
	at := func(p string) string { return filepath.Join(root, p) }

	dpkg("-i", debs["1.0"][0], debs["1.0"][1])

	// The files, with their modes.
	for _, f := range []struct {
		path string
		mode fs.FileMode
	}{
		{"usr/bin/btmm-coredns", 0o755},
		{"usr/bin/btmm-admin", 0o755},
		{"etc/btmm/Corefile", 0o644},
		{"usr/lib/systemd/system/btmm-server.service", 0o644},
		{"usr/share/doc/btmm-server/examples/Corefile.tls", 0o644},
		{"usr/bin/btmm-client", 0o755},
		{"etc/btmm-client/btmm-client.toml", 0o644},
		{"usr/lib/systemd/system/btmm-client.service", 0o644},
		{"usr/share/doc/btmm-client/example.toml", 0o644},
	} {
		st, err := os.Stat(at(f.path))
		if err != nil {
			t.Errorf("after dpkg -i: %v", err)
			continue
		}
		if !st.Mode().IsRegular() || st.Mode().Perm() != f.mode {
			t.Errorf("/%s: mode %v, want a file of mode %v", f.path, st.Mode(), f.mode)
		}
	}
	// The binaries are the built ones.
	for bin, built := range map[string]string{"usr/bin/btmm-coredns": "coredns", "usr/bin/btmm-admin": "btmm-admin", "usr/bin/btmm-client": "btmm-client"} {
		a, _ := os.ReadFile(at(bin))
		b, _ := os.ReadFile(coredns.Built(t, built))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("/%s is not bin/%s", bin, built)
		}
	}
	// Nothing in /var/lib but dpkg's own: systemd makes the state
	// directories (StateDirectory=).
	if entries, _ := os.ReadDir(at("var/lib")); len(entries) != 1 {
		t.Errorf("/var/lib after installing: %v, want only dpkg", entries)
	}
	// The conffiles, registered.
	for pkg, conffile := range map[string]string{"btmm-server": "/etc/btmm/Corefile", "btmm-client": "/etc/btmm-client/btmm-client.toml"} {
		if got := query("${Conffiles}", pkg); !strings.Contains(got, " "+conffile+" ") {
			t.Errorf("%s's conffiles: %q, want %s", pkg, got, conffile)
		}
		if got := query("${Status} ${Version}", pkg); got != "install ok installed 1.0" {
			t.Errorf("%s: %q, want installed at 1.0", pkg, got)
		}
	}

	verifyUnits(t, root)

	// State as a running system would have it, the admin's own files in
	// /etc, an edited conffile and an enabled service.
	planted := map[string]string{
		"var/lib/btmm/members.db":                                        "the zone's store",
		"var/lib/btmm-client/identity":                                   "the host's tunnel address",
		"var/lib/btmm-client/x25519.key":                                 "the host's key",
		"var/lib/btmm-client/peers.json":                                 "[]",
		"etc/btmm/users.keys":                                            alice.block(),
		"etc/btmm-client/alice.key":                                      alice.block(),
		"etc/systemd/system/multi-user.target.wants/btmm-server.service": "",
		"etc/systemd/system/multi-user.target.wants/btmm-client.service": "",
	}
	for p, content := range planted {
		os.MkdirAll(filepath.Dir(at(p)), 0o755)
		var err error
		if strings.HasPrefix(p, "etc/systemd/") {
			err = os.Symlink("/usr/lib/systemd/system/"+filepath.Base(p), at(p))
		} else {
			err = os.WriteFile(at(p), []byte(content), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	edited := "\n# the admin's edit\n"
	corefile, _ := os.ReadFile(at("etc/btmm/Corefile"))
	os.WriteFile(at("etc/btmm/Corefile"), append(corefile, edited...), 0o644)

	// The upgrade keeps all of it.
	dpkg("-i", debs["1.1"][0], debs["1.1"][1])
	for _, pkg := range []string{"btmm-server", "btmm-client"} {
		if got := query("${Status} ${Version}", pkg); got != "install ok installed 1.1" {
			t.Errorf("%s after the upgrade: %q, want installed at 1.1", pkg, got)
		}
	}
	kept := func(when string, wantService bool) {
		t.Helper()
		for p, content := range planted {
			if strings.HasPrefix(p, "etc/systemd/") {
				if _, err := os.Lstat(at(p)); (err == nil) != wantService {
					t.Errorf("%s: /%s there: %v, want %v", when, p, err == nil, wantService)
				}
				continue
			}
			if got, err := os.ReadFile(at(p)); err != nil || string(got) != content {
				t.Errorf("%s: /%s is %q (%v), want it kept", when, p, got, err)
			}
		}
	}
	kept("after the upgrade", true)
	if got, _ := os.ReadFile(at("etc/btmm/Corefile")); !strings.HasSuffix(string(got), edited) {
		t.Errorf("the upgrade lost the edit of /etc/btmm/Corefile:\n%s", got)
	}

	// Removing keeps the conffiles; purging removes them and the services'
	// enablement, and leaves the state and the admin's files (see
	// README.md, "Removing").
	dpkg("--remove", "btmm-server", "btmm-client")
	for _, p := range []string{"usr/bin/btmm-coredns", "usr/bin/btmm-client", "usr/lib/systemd/system/btmm-server.service"} {
		if _, err := os.Stat(at(p)); err == nil {
			t.Errorf("/%s is still there after dpkg --remove", p)
		}
	}
	if _, err := os.Stat(at("etc/btmm/Corefile")); err != nil {
		t.Errorf("dpkg --remove removed the conffile: %v", err)
	}
	kept("after dpkg --remove", true)
	dpkg("--purge", "btmm-server", "btmm-client")
	for _, p := range []string{"etc/btmm/Corefile", "etc/btmm-client/btmm-client.toml"} {
		if _, err := os.Stat(at(p)); err == nil {
			t.Errorf("/%s is still there after dpkg --purge", p)
		}
	}
	kept("after dpkg --purge", false)
	for _, pkg := range []string{"btmm-server", "btmm-client"} {
		if got := query("${Status}", pkg); got != "" && got != "unknown ok not-installed" {
			t.Errorf("%s after the purge: %q", pkg, got)
		}
	}
}

// verifyUnits runs systemd-analyze verify on the installed unit files,
// where the tool is (Debian package systemd; it needs no running systemd).
// It reads them in a copy of root that has this system's units beside
// them (their dependencies, sysinit.target and the like), so that it
// checks their commands in the package's tree; any complaint fails.
func verifyUnits(t *testing.T, root string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is not installed (Debian package systemd)")
		}
		t.Log("systemd-analyze is not installed (Debian package systemd): the unit files are not verified")
		return
	}
	v := t.TempDir()
	if out, err := exec.Command("cp", "-a", root+"/.", v).CombinedOutput(); err != nil {
		t.Fatalf("copying the scratch root: %v\n%s", err, out)
	}
	units := filepath.Join(v, "usr/lib/systemd/system")
	if out, err := exec.Command("cp", "-an", "/usr/lib/systemd/system/.", units).CombinedOutput(); err != nil {
		t.Fatalf("copying this system's units: %v\n%s", err, out)
	}
	// ExecReload's /bin/kill (usr-merged, as Debian is).
	os.Symlink("usr/bin", filepath.Join(v, "bin"))
	if kill, err := exec.LookPath("kill"); err == nil {
		if b, err := os.ReadFile(kill); err == nil {
			os.WriteFile(filepath.Join(v, "usr/bin/kill"), b, 0o755)
		}
	}
	cmd := exec.Command(analyze, "verify", "--root="+v, "btmm-server.service", "btmm-client.service")
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// unitSettings reads a unit file's settings, each key's values in order.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			m[k] = append(m[k], v)
		}
	}
	return m
}

// TestUnitFiles checks what the units grant: a system user each, one
// capability each, the state directories, the hardening.
func TestUnitFiles(t *testing.T) {
	top := repoTop(t)
	for _, c := range []struct {
		unit string
		want map[string]string
	}{
		{"plugin/cmd/coredns/deb/btmm-server.service", map[string]string{
			"User": "btmm", "ExecStart": "/usr/bin/btmm-coredns -conf /etc/btmm/Corefile",
			"AmbientCapabilities": "CAP_NET_BIND_SERVICE", "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
			"StateDirectory": "btmm", "WorkingDirectory": "/var/lib/btmm", "RuntimeDirectory": "btmm",
			"PrivateDevices": "yes",
		}},
		{"client/cmd/btmm-client/deb/btmm-client.service", map[string]string{
			"User": "btmm-client", "ExecStart": "/usr/bin/btmm-client run --config /etc/btmm-client/btmm-client.toml",
			"AmbientCapabilities": "CAP_NET_ADMIN", "CapabilityBoundingSet": "CAP_NET_ADMIN",
			"StateDirectory": "btmm-client", "RuntimeDirectory": "btmm-client",
			"DevicePolicy": "closed", "DeviceAllow": "/dev/net/tun rw",
		}},
	} {
		got := unitSettings(t, filepath.Join(top, c.unit))
		for k, v := range map[string]string{"NoNewPrivileges": "yes", "ProtectSystem": "strict",
			"ProtectHome": "yes", "PrivateTmp": "yes"} {
			c.want[k] = v
		}
		for k, v := range c.want {
			if len(got[k]) != 1 || got[k][0] != v {
				t.Errorf("%s: %s=%q, want %s=%s", c.unit, k, got[k], k, v)
			}
		}
	}
}

// TestPackagedCorefile starts the server on the Corefile that btmm-server
// installs in /etc/btmm (on free ports, its admin socket in the test's
// directory), in a working directory as the unit's /var/lib/btmm: the
// store is made there, and btmm-admin adds a user.
func TestPackagedCorefile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoTop(t), "plugin/cmd/coredns/deb/Corefile"))
	if err != nil {
		t.Fatal(err)
	}
	corefile := strings.NewReplacer(
		"members.example.com:53 ", "members.example.com:{{PORT}} ",
		":5301", "127.0.0.1:{{UPDATEPORT}}", ":5352", "127.0.0.1:{{LLQPORT}}",
		"/run/btmm/admin.sock", "admin.sock",
	).Replace(string(b))
	if corefile == string(b) || strings.Contains(corefile, ":53 ") {
		t.Fatalf("the packaged Corefile's ports are not where this test expects them:\n%s", b)
	}
	dir := t.TempDir()
	s := coredns.New(t, dir, corefile)
	s.Start(zone)
	if _, err := os.Stat(filepath.Join(dir, "members.db")); err != nil {
		t.Errorf("the store is not in the working directory: %v\n%s", err, s.Output())
	}
	addUser(t, filepath.Join(dir, "admin.sock"))
}

// addUser adds bob with btmm-admin through the admin socket.
func addUser(t *testing.T, socket string) {
	t.Helper()
	out, err := exec.Command(coredns.Built(t, "btmm-admin"), "-socket", socket, "add", "bob").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `key "bob.members.example.com."`) {
		t.Errorf("btmm-admin -socket %s add bob: %v\n%s", socket, err, out)
	}
}

// TestPackagedClientConfig reads the configuration that btmm-client
// installs in /etc/btmm-client: the state and the status socket are in the
// unit's state and runtime directories. The launchd property list beside
// it runs the same command.
func TestPackagedClientConfig(t *testing.T) {
	dir := filepath.Join(repoTop(t), "client/cmd/btmm-client/deb")
	c, err := config.Load(filepath.Join(dir, "btmm-client.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/var/lib/btmm-client" || c.StatusSocket != "/run/btmm-client/status.sock" ||
		c.Key != "/etc/btmm-client/alice.key" {
		t.Errorf("state_dir %q, status_socket %q, key %q", c.StateDir, c.StatusSocket, c.Key)
	}

	b, err := os.ReadFile(filepath.Join(dir, "org.openbtmm.btmm-client.plist"))
	if err != nil {
		t.Fatal(err)
	}
	var plist struct {
		Dict struct {
			Items []struct {
				XMLName xml.Name
				Value   string   `xml:",chardata"`
				Strings []string `xml:"string"`
			} `xml:",any"`
		} `xml:"dict"`
	}
	if err := xml.Unmarshal(b, &plist); err != nil {
		t.Fatalf("the launchd property list: %v", err)
	}
	var args []string
	items := plist.Dict.Items
	for i := 0; i+1 < len(items); i++ {
		if items[i].XMLName.Local == "key" && items[i].Value == "ProgramArguments" {
			args = items[i+1].Strings
		}
	}
	if got := strings.Join(args, " "); got != "/usr/local/bin/btmm-client run --config /usr/local/etc/btmm-client/btmm-client.toml" {
		t.Errorf("the launchd property list runs %q", got)
	}
}

// TestServerWithUnitPrivileges runs the server as btmm-server.service
// does, on the Corefile the package installs: an unprivileged user (nobody
// here, btmm there) with CAP_NET_BIND_SERVICE alone, ambient and in the
// bounding set, and no new privileges, in a working directory of its own
// (the unit's /var/lib/btmm). It answers on port 53, in a network
// namespace of its own so that no other server's port is in the way,
// makes its store in the working directory, and its admin socket takes a
// user from root's btmm-admin.
func TestServerWithUnitPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		msg := "the server's privileges: needs root (to drop them)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dig := coredns.NeedTool(t, "dig", "bind9-dnsutils")
	for _, tool := range []string{"setpriv", "unshare", "nsenter"} {
		coredns.NeedTool(t, tool, "util-linux")
	}
	b, err := os.ReadFile(filepath.Join(repoTop(t), "plugin/cmd/coredns/deb/Corefile"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	etc, state, run := filepath.Join(dir, "etc"), filepath.Join(dir, "state"), filepath.Join(dir, "run")
	for _, d := range []string{filepath.Dir(dir), dir} {
		os.Chmod(d, 0o711)
	}
	os.Mkdir(etc, 0o755)
	socket := filepath.Join(run, "admin.sock")
	corefile := filepath.Join(etc, "Corefile")
	os.WriteFile(corefile, bytes.ReplaceAll(b, []byte("/run/btmm/admin.sock"), []byte(socket)), 0o644)
	// The unit's user owns the state and runtime directories
	// (StateDirectory=, RuntimeDirectory=).
	for _, d := range []string{state, run} {
		os.Mkdir(d, 0o750)
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.Command("unshare", "--net", "--",
		"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all,+net_bind_service", "--ambient-caps=-all,+net_bind_service",
		"--bounding-set=-all,+net_bind_service", "--no-new-privs", "--",
		coredns.Binary(t), "-conf", corefile)
	cmd.Dir = state
	var out coredns.Output
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer func() { cmd.Process.Kill(); <-done }()
	in := func(args ...string) *exec.Cmd {
		return exec.Command("nsenter", append([]string{"-t", fmt.Sprint(cmd.Process.Pid), "-n"}, args...)...)
	}

	// unshare and setpriv exec the server in turn; then its namespace's
	// loopback goes up, and it answers its zone's SOA on port 53.
	deadline := time.Now().Add(20 * time.Second)
	var answer []byte
	for {
		proc, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		if strings.Contains(string(proc), "\nUid:\t65534\t") {
			in("ip", "link", "set", "lo", "up").Run()
			answer, _ = in(dig, "+short", "+time=1", "+tries=1", "@127.0.0.1", "-p", "53", "members.example.com", "SOA").Output()
			if strings.Contains(string(answer), "ns1.members.example.com.") {
				for _, want := range []string{"\nCapEff:\t0000000000000400\n", "\nCapBnd:\t0000000000000400\n", "\nNoNewPrivs:\t1\n"} {
					if !strings.Contains(string(proc), want) {
						t.Errorf("the server lacks %q:\n%s", want, proc)
					}
				}
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("the server exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SOA on port 53 within 20s (%q):\n%s", answer, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(state, "members.db")); err != nil {
		t.Errorf("the store is not in the working directory: %v", err)
	}
	// root (sudo btmm-admin) adds a user on the socket that only the
	// server's user may open.
	if st, err := os.Stat(socket); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the admin socket: %v %v", st, err)
	}
	addUser(t, socket)
}
