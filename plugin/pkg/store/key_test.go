package store

import (
	"bytes"
	"testing"
)

func TestKeyOrdersSubtrees(t *testing.T) {
	zone, _ := Key("members.example.com.")
	alice, _ := Key("Alice.Members.Example.COM.")
	host, _ := Key("laptop.alice.members.example.com.")
	alicia, _ := Key("alicia.members.example.com.")
	if !bytes.HasPrefix(alice, zone) || !bytes.HasPrefix(host, alice) {
		t.Fatalf("subtree keys do not share their parent's prefix: %q %q %q", zone, alice, host)
	}
	if bytes.HasPrefix(alicia, alice) {
		t.Fatalf("sibling alicia has alice's key as prefix: %q %q", alicia, alice)
	}
	lower, _ := Key("alice.members.example.com")
	if !bytes.Equal(lower, alice) {
		t.Fatalf("case or trailing dot changed the key: %q vs %q", lower, alice)
	}
}

func TestKeyNameRoundTrip(t *testing.T) {
	for _, name := range []string{".", "com.", "AutoTunnel-02-11-22-FF-FE-33-44-55.alice.members.example.com.", `a\.b.example.`, `\000.example.`} {
		k, err := Key(name)
		if err != nil {
			t.Fatalf("Key(%q): %v", name, err)
		}
		got, err := KeyName(k)
		if err != nil {
			t.Fatalf("KeyName(Key(%q)): %v", name, err)
		}
		if got != Canonical(name) {
			t.Errorf("KeyName(Key(%q)) = %q, want %q", name, got, Canonical(name))
		}
	}
}

func TestOwner(t *testing.T) {
	z := "members.example.com."
	for name, want := range map[string]string{
		z:                                    z,
		"alice.members.example.com.":         "alice." + z,
		"_autotunnel._udp.laptop.alice." + z: "alice." + z,
		"autotunnel-02-11-22-ff-fe-33-44-55.bob." + z: "bob." + z,
	} {
		if got := Owner(z, name); got != want {
			t.Errorf("Owner(%q) = %q, want %q", name, got, want)
		}
	}
}

func FuzzKeyName(f *testing.F) {
	k, _ := Key("laptop.alice.members.example.com.")
	f.Add(k)
	f.Add([]byte{3, 'c', 'o'})
	f.Fuzz(func(t *testing.T, key []byte) {
		name, err := KeyName(key)
		if err != nil {
			return
		}
		again, err := Key(name)
		if err != nil {
			t.Fatalf("KeyName gave %q which Key refuses: %v", name, err)
		}
		back, err := KeyName(again)
		if err != nil || back != name {
			t.Fatalf("round trip of %q: %q, %v", name, back, err)
		}
	})
}

// FuzzPlainKey checks the query path's fast key against the general one:
// for any string it accepts, both give the same key.
func FuzzPlainKey(f *testing.F) {
	for _, s := range []string{".", "", "a.", "Laptop.Alice.members.example.com", ".a.", "a..b.", `a\.b.`, "\xff.example."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		fast, ok := plainKey(name)
		if !ok {
			return
		}
		slow, err := packedKey(name)
		if err != nil {
			t.Fatalf("plainKey(%q) = %q, packedKey refuses it: %v", name, fast, err)
		}
		if !bytes.Equal(fast, slow) {
			t.Fatalf("plainKey(%q) = %q, packedKey = %q", name, fast, slow)
		}
	})
}
