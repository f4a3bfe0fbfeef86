package lab

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// tools the lab itself runs, with the Debian package of each.
var tools = []struct{ name, pkg string }{
	{"ip", "iproute2"},
	{"nft", "nftables"},
	{"miniupnpd", "miniupnpd-nftables"},
}

// Missing lists what the machine lacks to build a lab: root, and the
// tools with the Debian package of each. Empty means a lab can be built.
func Missing() []string {
	var m []string
	if os.Geteuid() != 0 {
		m = append(m, "root (the lab makes network namespaces)")
	}
	for _, t := range tools {
		if LookPath(t.name) == "" {
			m = append(m, fmt.Sprintf("%s (Debian package %s)", t.name, t.pkg))
		}
	}
	return m
}

// LookPath finds a tool in PATH or in /usr/sbin and /sbin (which a
// non-login PATH may lack); "" when it is not installed.
func LookPath(name string) string {
	for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	return ""
}

// Require stops a test that cannot build a lab, naming what is missing:
// it fails under CI (CI set, as .ci/run does) and skips elsewhere.
func Require(t testing.TB, extra ...string) {
	t.Helper()
	m := Missing()
	for i := 0; i+1 < len(extra); i += 2 {
		if LookPath(extra[i]) == "" {
			m = append(m, fmt.Sprintf("%s (Debian package %s)", extra[i], extra[i+1]))
		}
	}
	if len(m) == 0 {
		return
	}
	msg := "network lab: missing " + strings.Join(m, "; ")
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Start builds a lab for a test: Require (with extra tools as name,
// package pairs), New with t.Logf, and Close in t.Cleanup, so the lab
// goes however the test ends. A lab that cannot be built fails the test.
func Start(t testing.TB, opts Options, extra ...string) *Lab {
	t.Helper()
	Require(t, extra...)
	l, err := New(t.Logf, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	return l
}

// tool returns the path of a tool (see LookPath), or its bare name.
func tool(name string) string {
	if p := LookPath(name); p != "" {
		return p
	}
	return name
}
