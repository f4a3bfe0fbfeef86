package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// browse refuses what it cannot use before it sends anything: no config,
// a bad type, two types, a bad --push, dns-push without TLS.
func TestBrowseRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "alice.key")
	os.WriteFile(keyPath, keyfile.Format([]keyfile.Key{{Name: "alice.members.example.com.", Algorithm: "hmac-sha256.", Secret: derivedKey}}), 0o600)
	conf := filepath.Join(dir, "c.toml")
	os.WriteFile(conf, []byte(`zone = "members.example.com"
user = "alice"
host = "h"
key = "alice.key"
server = "127.0.0.1:1"
transport = "tcp"
`), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"browse"}, "needs --config"},
		{[]string{"browse", "--config", conf, "ssh", "smb"}, "one TYPE"},
		{[]string{"browse", "_ssh._sctp", "--config", conf}, "not a service type"},
		{[]string{"browse", "--config", conf, "--push", "always"}, "push"},
		{[]string{"browse", "--config", conf, "--push", "dns-push"}, "TLS only"},
	} {
		var out, errOut bytes.Buffer
		err := run(tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	// --once against a server that is not there fails, and says why.
	var out, errOut bytes.Buffer
	if err := run([]string{"browse", "--config", conf, "--once", "ssh"}, &out, &errOut); err == nil || out.Len() != 0 {
		t.Errorf("--once with no server: %v, printed %q", err, out.String())
	}
}
