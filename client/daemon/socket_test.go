package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStatusSocket(t *testing.T) {
	// Its directory is made if missing, as the default's
	// (/run/btmm-client) is when the daemon runs outside its service.
	path := filepath.Join(t.TempDir(), "btmm-client", "status.sock")
	l, err := listenStatus(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go serveStatus(ctx, l, func() Status { return Status{Host: "laptop.alice.members.example.com.", ULA: "fd00::1"} })
	st, err := Fetch(path)
	if err != nil || st.Host != "laptop.alice.members.example.com." || st.ULA != "fd00::1" {
		t.Fatalf("Fetch: %+v, %v", st, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v (%v), want 0660", fi.Mode(), err)
	}
	// A second daemon must not take the socket from a running one.
	if _, err := listenStatus(path); err == nil || !strings.Contains(err.Error(), "another btmm-client") {
		t.Fatalf("a second listenStatus: %v", err)
	}
	cancel()
	l.Close()
	// A stale socket from a crash is replaced.
	l2, err := listenStatus(path)
	if err != nil {
		t.Fatalf("replacing a stale socket: %v", err)
	}
	l2.Close()
}
