package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openbtmm/btmm/client/hostcert"
)

// trustConfig writes a configuration for alice's host in a new state
// directory.
func trustConfig(t *testing.T, host string) (conf, state string) {
	t.Helper()
	dir := t.TempDir()
	state = filepath.Join(dir, "state")
	key := filepath.Join(dir, "alice.key")
	os.WriteFile(key, []byte("key \"alice.members.example.com.\" {\n\talgorithm hmac-sha256;\n\tsecret \"F42STmDnGmFG1jyejcOLBJFIHgcGsAPxrqiDTI9YerQ=\";\n};\n"), 0o600)
	conf = filepath.Join(dir, "client.toml")
	os.WriteFile(conf, []byte("zone = \"members.example.com\"\nuser = \"alice\"\nhost = \""+host+"\"\nkey = \"alice.key\"\nstate_dir = \"state\"\nserver = \"127.0.0.1:53\"\ntransport = \"tcp\"\n"), 0o600)
	return conf, state
}

// The password gives the same user key on two hosts, and the same as
// keygen --user-key with that password; a host enrolled with --pin signs
// nothing, and takes a certificate from certify.
func TestEnrollAndCertify(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("correct horse battery staple\n"), 0o600)
	var pubs []string
	for _, h := range []string{"desktop", "laptop"} {
		conf, state := trustConfig(t, h)
		var out, errOut bytes.Buffer
		if err := run([]string{"enroll", "--config", conf, "--password-file", pwFile}, &out, &errOut); err != nil {
			t.Fatalf("%v\n%s", err, errOut.String())
		}
		pins, err := hostcert.LoadPinFile(filepath.Join(state, hostcert.PinFile))
		if err != nil {
			t.Fatal(err)
		}
		k, err := hostcert.LoadKeyFile(filepath.Join(state, hostcert.KeyFile))
		if err != nil || len(pins) != 1 || len(k) != 1 || k[0].Public() != pins[0] {
			t.Fatalf("%v %v", pins, err)
		}
		pubs = append(pubs, pins[0].String())
	}
	ukFile := filepath.Join(t.TempDir(), "alice.userkey")
	var out, errOut bytes.Buffer
	if err := run([]string{"keygen", "--user", "alice", "--zone", "members.example.com", "--password-file", pwFile, "--user-key", ukFile}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	k, err := hostcert.LoadKeyFile(ukFile)
	if err != nil || pubs[0] != pubs[1] || k[0].Public().String() != pubs[0] {
		t.Fatalf("%v: %v %v", err, pubs, k)
	}
	if !strings.Contains(errOut.String(), pubs[0]) {
		t.Errorf("keygen does not show the user key: %s", errOut.String())
	}
	if err := run([]string{"keygen", "--user", "alice", "--zone", "members.example.com", "--user-key", ukFile}, &out, &errOut); err == nil {
		t.Error("keygen replaced a user key file")
	}

	// A pin-only host, certified by the desktop.
	signer, _ := trustConfig(t, "desktop")
	run([]string{"enroll", "--config", signer, "--user-key", ukFile}, &out, &errOut)
	conf, state := trustConfig(t, "nas")
	if err := run([]string{"enroll", "--config", conf, "--pin", pubs[0]}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(state, hostcert.KeyFile)); err == nil {
		t.Fatal("a pin-only host holds the user key")
	}
	const ula, static = "fd00::7", "WgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAKU="
	out.Reset()
	if err := run([]string{"certify", "--config", signer, "--host", "nas", "--ula", ula, "--key", static}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(state, hostcert.CertFile), out.Bytes(), 0o644)
	tr, err := hostcert.Load(state, "alice.members.example.com")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := parseStatic(static)
	cs, err := tr.HostCerts("nas.alice.members.example.com.", mustAddr(ula), s)
	if err != nil || time.Until(time.Unix(int64(cs[0].NotAfter), 0)) < 364*24*time.Hour {
		t.Fatalf("%+v %v", cs, err)
	}
	if err := run([]string{"certify", "--config", conf, "--host", "x", "--ula", ula, "--key", static}, &out, &errOut); err == nil {
		t.Error("a pin-only host certified")
	}
	if err := run([]string{"enroll", "--config", conf}, &out, &errOut); err == nil {
		t.Error("enroll without a key")
	}
	if err := run([]string{"revoke", "--config", conf, "laptop"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "holds no user key") {
		t.Errorf("revoke on a pin-only host: %v", err)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// enroll --add keeps the keys pinned and held, after the new one; without
// it, only the new one stays.
func TestEnrollAdd(t *testing.T) {
	conf, state := trustConfig(t, "desktop")
	var out, errOut bytes.Buffer
	if err := run([]string{"enroll", "--config", conf, "--new"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	old, _ := hostcert.LoadKeyFile(filepath.Join(state, hostcert.KeyFile))
	nuFile := filepath.Join(t.TempDir(), "new.key")
	if err := run([]string{"keygen", "--user", "alice", "--zone", "members.example.com", "--user-key", nuFile}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	nu, _ := hostcert.LoadKeyFile(nuFile)
	if err := run([]string{"enroll", "--config", conf, "--user-key", nuFile, "--add"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	pins, _ := hostcert.LoadPinFile(filepath.Join(state, hostcert.PinFile))
	keys, _ := hostcert.LoadKeyFile(filepath.Join(state, hostcert.KeyFile))
	if len(pins) != 2 || pins[0] != nu[0].Public() || pins[1] != old[0].Public() || len(keys) != 2 || keys[0].Public() != nu[0].Public() {
		t.Fatalf("after --add: pins %v, keys %v", pins, keys)
	}
	if err := run([]string{"enroll", "--config", conf, "--user-key", nuFile}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	pins, _ = hostcert.LoadPinFile(filepath.Join(state, hostcert.PinFile))
	keys, _ = hostcert.LoadKeyFile(filepath.Join(state, hostcert.KeyFile))
	if len(pins) != 1 || pins[0] != nu[0].Public() || len(keys) != 1 {
		t.Fatalf("after the overlap: pins %v, keys %v", pins, keys)
	}
}
