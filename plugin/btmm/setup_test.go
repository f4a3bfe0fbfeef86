package btmm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

const aliceKey = `key "alice.members.example.com." {
	algorithm hmac-sha256;
	secret "F42STmDnGmFG1jyejcOLBJFIHgcGsAPxrqiDTI9YerQ=";
};
`

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	keys := writeFile(t, dir, "users.keys", aliceKey)
	outside := writeFile(t, dir, "outside.keys", strings.Replace(aliceKey, "alice.members.example.com.", "alice.example.net.", 1))
	broken := writeFile(t, dir, "broken.keys", "key \"a.members.example.com.\" {\n\talgorithm hmac-sha256;\n\tsecret \"!!!\";\n};\n")

	tests := []struct {
		input   string
		wantErr string // a part of the error, or "" for none
	}{
		{"btmm members.example.com {\n keys " + keys + "\n}", ""},
		{"btmm {\n keys " + keys + "\n store " + dir + "/m.db\n ns ns1.members.example.com. 192.0.2.53 2001:db8::53\n ns ns2.example.net.\n}", ""},
		{"btmm members.example.com", "keys FILE is required"},
		{"btmm members.example.com {\n keys " + keys + "\n keys " + keys + "\n}", "more than once"},
		{"btmm members.example.com {\n keys " + keys + "\n bogus 1\n}", `unknown property "bogus"`},
		{"btmm members.example.com {\n keys " + keys + "\n ns ns1.members.example.com.\n}", "needs an address"},
		{"btmm members.example.com {\n keys " + keys + "\n ns ns1.members.example.com. not-an-ip\n}", "invalid address"},
		{"btmm members.example.com {\n keys " + outside + "\n}", "not a user's domain"},
		{"btmm members.example.com {\n keys " + broken + "\n}", "broken.keys:3"},
		{"btmm members.example.com {\n keys " + dir + "/missing.keys\n}", "missing.keys"},
		{"btmm a.example. b.example. {\n keys " + keys + "\n}", "Wrong argument count"},
	}
	for _, tc := range tests {
		c := caddy.NewTestController("dns", tc.input)
		c.ServerBlockKeys = []string{"members.example.com."}
		_, err := parse(c)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: unexpected error %v", tc.input, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: error %v, want one containing %q", tc.input, err, tc.wantErr)
		}
	}
}

func TestParseKeysAndDefaults(t *testing.T) {
	keys := writeFile(t, t.TempDir(), "users.keys", aliceKey)
	c := caddy.NewTestController("dns", "btmm Members.Example.COM {\n keys "+keys+"\n}")
	b, err := parse(c)
	if err != nil {
		t.Fatal(err)
	}
	if b.zone != zone {
		t.Errorf("zone %q, want %q", b.zone, zone)
	}
	if b.storePath != "members.example.com.db" {
		t.Errorf("default store %q", b.storePath)
	}
	if k, ok := b.Key("ALICE.members.example.com."); !ok || k.Algorithm != "hmac-sha256." {
		t.Errorf("key lookup: %+v %v", k, ok)
	}
}
