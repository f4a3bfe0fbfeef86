package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

func TestKeygenWritesAKeyFile(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run([]string{"keygen", "--user", "alice", "--zone", "Members.Example.com"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	keys, err := keyfile.Parse(&out, "stdout")
	if err != nil || len(keys) != 1 {
		t.Fatalf("keygen output does not parse as one key: %v %v", keys, err)
	}
	k := keys[0]
	secret, _ := base64.StdEncoding.DecodeString(k.Secret)
	if k.Name != "alice.members.example.com." || k.Algorithm != "hmac-sha256." || len(secret) != 32 {
		t.Fatalf("key %+v with %d-octet secret", k, len(secret))
	}
	var again bytes.Buffer
	run([]string{"keygen", "--user", "alice", "--zone", "members.example.com"}, &again, &errOut)
	if strings.Contains(again.String(), k.Secret) {
		t.Fatal("two runs of keygen made the same secret")
	}
}

func TestKeygenRefusesBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"keygen"},
		{"keygen", "--user", "alice"},
		{"keygen", "--user", "al.ice", "--zone", "members.example.com"},
		{"keygen", "--user", "alice", "--zone", "members.example.com", "--algorithm", "hmac-md5"},
		{"keygen", "--user", "alice", "--zone", "members.example.com", "extra"},
		{"frobnicate"},
	} {
		var out, errOut bytes.Buffer
		if err := run(args, &out, &errOut); err == nil {
			t.Errorf("%q: no error; printed %q", args, out.String())
		}
	}
}

// The key secret_test.go's first vector gives: password "correct horse
// battery staple", alice.members.example.com., hmac-sha256.
const derivedKey = "UDhU78txoPVuHQkxSoAUx0Ik1Yx5CMtMERcIhq0y8ys="

// fakeInput makes standard input in, a terminal if typed is not nil, where
// each read without echo returns the next of typed.
func fakeInput(t *testing.T, in string, typed []string) {
	oldStdin, oldTerminal, oldRead := stdin, terminal, readNoEcho
	t.Cleanup(func() { stdin, terminal, readNoEcho = oldStdin, oldTerminal, oldRead })
	stdin = strings.NewReader(in)
	terminal = func() (int, bool) { return 99, typed != nil }
	readNoEcho = func(fd int) ([]byte, error) {
		if fd != 99 || len(typed) == 0 {
			return nil, errors.New("unexpected read from the terminal")
		}
		s := typed[0]
		typed = typed[1:]
		return []byte(s), nil
	}
}

func keygenSecret(t *testing.T, args ...string) (secret, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(append([]string{"keygen", "--user", "alice", "--zone", "members.example.com"}, args...), &out, &errOut)
	if err != nil {
		return "", errOut.String(), err
	}
	keys, perr := keyfile.Parse(&out, "stdout")
	if perr != nil || len(keys) != 1 || keys[0].Name != "alice.members.example.com." {
		t.Fatalf("keygen output does not parse as alice's key: %v %v", keys, perr)
	}
	return keys[0].Secret, errOut.String(), nil
}

func TestKeygenPassword(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	os.WriteFile(file, []byte("correct horse battery staple\r\nsecond line\n"), 0o600)

	t.Run("password-file", func(t *testing.T) {
		fakeInput(t, "", nil)
		got, _, err := keygenSecret(t, "--password-file", file)
		if err != nil || got != derivedKey {
			t.Fatalf("secret %q, %v; want %q", got, err, derivedKey)
		}
	})
	t.Run("first line of stdin", func(t *testing.T) {
		fakeInput(t, "correct horse battery staple\nnot this", nil)
		got, _, err := keygenSecret(t, "--password")
		if err != nil || got != derivedKey {
			t.Fatalf("secret %q, %v; want %q", got, err, derivedKey)
		}
	})
	t.Run("stdin without a newline", func(t *testing.T) {
		fakeInput(t, "correct horse battery staple", nil)
		got, _, err := keygenSecret(t, "--password")
		if err != nil || got != derivedKey {
			t.Fatalf("secret %q, %v; want %q", got, err, derivedKey)
		}
	})
	t.Run("terminal", func(t *testing.T) {
		fakeInput(t, "", []string{"correct horse battery staple", "correct horse battery staple"})
		got, prompts, err := keygenSecret(t, "--password")
		if err != nil || got != derivedKey {
			t.Fatalf("secret %q, %v; want %q", got, err, derivedKey)
		}
		if !strings.Contains(prompts, "Password for alice.members.example.com.: ") || !strings.Contains(prompts, "Again: ") {
			t.Errorf("prompts %q", prompts)
		}
	})
	t.Run("terminal, passwords differ", func(t *testing.T) {
		fakeInput(t, "", []string{"correct horse battery staple", "correct horse battery stapel"})
		if _, _, err := keygenSecret(t, "--password"); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("short password warns", func(t *testing.T) {
		fakeInput(t, "hunter2\n", nil)
		_, warning, err := keygenSecret(t, "--password")
		if err != nil || !strings.Contains(warning, "warning") {
			t.Fatalf("stderr %q, %v", warning, err)
		}
	})
	t.Run("algorithm sets the length", func(t *testing.T) {
		fakeInput(t, "correct horse battery staple\n", nil)
		got, _, err := keygenSecret(t, "--password", "--algorithm", "hmac-sha512")
		// secret_test.go's second vector.
		if want := "CBoaNDJCzu/Vx960ZQY56Y7yT6RuN/f4djn0p3RFO6KqjYxNLM/S+rTJ0XGcQ1iuLK2bwGt6djpaP5HCbMXm2g=="; err != nil || got != want {
			t.Fatalf("secret %q, %v; want %q", got, err, want)
		}
	})

	long := filepath.Join(dir, "long")
	os.WriteFile(long, bytes.Repeat([]byte("x"), passwordMax+1), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\nsecond line\n"), 0o600)
	for _, tc := range []struct {
		name, in string
		args     []string
	}{
		{"empty stdin", "", []string{"--password"}},
		{"empty first line", "\npassword\n", []string{"--password"}},
		{"empty file line", "", []string{"--password-file", empty}},
		{"missing file", "", []string{"--password-file", filepath.Join(dir, "missing")}},
		{"line too long", "", []string{"--password-file", long}},
		{"both flags", "pw\n", []string{"--password", "--password-file", file}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakeInput(t, tc.in, nil)
			if got, _, err := keygenSecret(t, tc.args...); err == nil {
				t.Fatalf("secret %q, no error", got)
			}
		})
	}
}

func TestRunESPKeyLogFlag(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "c.toml")
	os.WriteFile(conf, []byte("zone = \"members.example.com\"\nuser = \"alice\"\nhost = \"h\"\nserver = \"192.0.2.1:53\"\nkey = \"/k\"\nesp_keylog = \"/var/tmp/file.keys\"\n"), 0o600)
	// The flag wins over the file: pointing it at the key file fails
	// validation, which shows the flag's value took the file's place.
	var out, errOut bytes.Buffer
	err := run([]string{"run", "--config", conf, "--esp-keylog", "/k"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `esp_keylog: "/k" is the TSIG key file`) {
		t.Errorf("run --esp-keylog /k: %v", err)
	}
	err = run([]string{"run", "--config", conf, "--set", "esp_keylog=/var/tmp/x", "--esp-keylog", "/k"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `esp_keylog: "/k"`) {
		t.Errorf("--esp-keylog does not win over --set: %v", err)
	}
	errOut.Reset()
	if err := run([]string{"run", "--help"}, &out, &errOut); err != nil || !strings.Contains(errOut.String(), "-esp-keylog FILE") {
		t.Errorf("run --help: %v\n%s", err, errOut.String())
	}
	out.Reset()
	run([]string{"help"}, &out, &errOut)
	if !strings.Contains(out.String(), "--esp-keylog FILE") {
		t.Errorf("help does not mention --esp-keylog")
	}
}
