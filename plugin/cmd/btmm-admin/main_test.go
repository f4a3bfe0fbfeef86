package main

import (
	"errors"
	"io"
	"testing"
)

// TestUsage: mistakes in the command line are usage errors (exit 2),
// found before the socket is dialled.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"add"},
		{"add", "alice", "bob"},
		{"revoke", "alice", "-unknown"},
		{"rotate", "alice", "-overlap", "soon"},
		{"list", "extra"},
		{"import"},
	} {
		if err := run(append([]string{"-socket", "/nonexistent/admin.sock"}, args...), io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("btmm-admin %q: %v, want a usage error", args, err)
		}
	}
	// Flags after NAME are read as flags.
	if err := run([]string{"-socket", "/nonexistent/admin.sock", "revoke", "alice", "-keep-records"}, io.Discard); err == nil || errors.Is(err, errUsage) {
		t.Errorf("revoke alice -keep-records: %v, want a dial error", err)
	}
}
