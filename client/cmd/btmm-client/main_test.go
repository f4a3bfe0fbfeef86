package main

import (
	"bytes"
	"encoding/base64"
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
