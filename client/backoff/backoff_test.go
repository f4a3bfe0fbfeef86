package backoff

import (
	"testing"
	"time"
)

// TestBackoff: delays double from Min up to Max, each within the jitter
// of its nominal value, and not all the same (they are spread); Reset
// starts again from Min.
func TestBackoff(t *testing.T) {
	b := Backoff{Min: 500 * time.Millisecond, Max: 4 * time.Second}
	for _, nominal := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		d := b.Next()
		if lo, hi := time.Duration(float64(nominal)*(1-Jitter)), time.Duration(float64(nominal)*(1+Jitter)); d < lo || d > hi {
			t.Fatalf("delay %v, want %v ± %.0f%%", d, nominal, Jitter*100)
		}
	}
	b.Reset()
	if d := b.Next(); d > time.Duration(float64(500*time.Millisecond)*(1+Jitter)) {
		t.Fatalf("after Reset: %v", d)
	}
	seen := make(map[time.Duration]bool)
	for range 20 {
		b.Reset()
		seen[b.Next()] = true
	}
	if len(seen) < 10 {
		t.Fatalf("20 clients would retry at only %d distinct delays", len(seen))
	}
}
