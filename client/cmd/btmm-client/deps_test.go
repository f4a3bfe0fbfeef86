package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoServer: the client shares wire formats with the server through
// packages that import only the standard library, golang.org/x and
// miekg/dns; nothing of CoreDNS, nor of etcd (which the server's zone
// store may use), may end up in its binary.
func TestLinksNoServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/openbtmm/btmm/client/cmd/btmm-client").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "github.com/coredns/") || strings.Contains(pkg, "go.etcd.io/etcd/") {
			t.Errorf("btmm-client links %s", pkg)
		}
	}
}
