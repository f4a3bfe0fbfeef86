package tsigupdate

import "testing"

// TestKeyRates: each key has its own bucket: one key's burst used up does
// not touch another's; over the rate, one UPDATE a second is answered and
// the others dropped; a rate of 0 limits nothing.
func TestKeyRates(t *testing.T) {
	k := newKeyRates(1, 3)
	for i := range 3 {
		if ok, _ := k.allow("alice."); !ok {
			t.Fatalf("UPDATE %d of a burst of 3 refused", i+1)
		}
	}
	answered := 0
	for range 10 {
		ok, answer := k.allow("alice.")
		if ok {
			t.Fatal("an UPDATE passed after the burst of 3")
		}
		if answer {
			answered++
		}
	}
	if answered != 1 {
		t.Fatalf("%d of 10 UPDATEs over the rate answered at once, want 1 (the rest dropped)", answered)
	}
	if ok, _ := k.allow("bob."); !ok {
		t.Fatal("bob was refused for alice's burst")
	}
	off := newKeyRates(0, 0)
	for range 1000 {
		if ok, answer := off.allow("alice."); !ok || !answer {
			t.Fatal("rate 0 refused an UPDATE")
		}
	}
}
