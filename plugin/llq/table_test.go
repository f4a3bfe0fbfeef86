package llq

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestTableExpiry: the sweep removes exactly the LLQs whose lease ended,
// renewals included, and leaves the indexes consistent.
func TestTableExpiry(t *testing.T) {
	tb := newTable()
	now := time.Unix(1_800_000_000, 0)
	ends := make(map[uint64]time.Time)
	for id := uint64(1); id <= 1000; id++ {
		l := &llq{id: id, q: qkey{name: "a.example.", qtype: 1}, owner: "o"}
		end := now.Add(time.Duration(rand.IntN(100)) * time.Second)
		tb.renew(l, end)
		tb.add(l)
		ends[id] = end
	}
	// Renew every third one, some earlier, some later.
	for id := uint64(3); id <= 1000; id += 3 {
		end := now.Add(time.Duration(rand.IntN(100)) * time.Second)
		tb.renew(tb.byID[id], end)
		ends[id] = end
	}
	tb.remove(tb.byID[500])
	delete(ends, 500)
	for step := time.Duration(0); step <= 105*time.Second; step += 7 * time.Second {
		at := now.Add(step)
		tb.removeExpired(at)
		for id, end := range ends {
			_, live := tb.byID[id]
			if want := at.Before(end); live != want {
				t.Fatalf("at +%v: LLQ %d ending +%v live=%v, want %v", step, id, end.Sub(now), live, want)
			}
		}
		if len(tb.byExpiry) != len(tb.byID) || tb.byOwner["o"] != len(tb.byID) && len(tb.byID) > 0 {
			t.Fatalf("indexes disagree: %d by expiry, %d by ID, %d by owner", len(tb.byExpiry), len(tb.byID), tb.byOwner["o"])
		}
	}
	if len(tb.byID) != 0 || len(tb.byQ) != 0 {
		t.Fatalf("%d LLQs left after every lease ended", len(tb.byID))
	}
}
