package keyrate

import "testing"

// TestLimiter: each key has its own bucket: one key's burst used up does
// not touch another's; over the rate, one UPDATE a second is answered and
// the others dropped; a rate of 0 limits nothing.
func TestLimiter(t *testing.T) {
	k := New(1, 3)
	for i := range 3 {
		if ok, _ := k.Allow("alice."); !ok {
			t.Fatalf("UPDATE %d of a burst of 3 refused", i+1)
		}
	}
	answered := 0
	for range 10 {
		ok, answer := k.Allow("alice.")
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
	if ok, _ := k.Allow("bob."); !ok {
		t.Fatal("bob was refused for alice's burst")
	}
	off := New(0, 0)
	for range 1000 {
		if ok, answer := off.Allow("alice."); !ok || !answer {
			t.Fatal("rate 0 refused an UPDATE")
		}
	}
}
