// Package backoff is the retry delay of the client's loops that talk to
// the server (publishing, watching): it doubles from a minimum to a
// maximum, and each delay is drawn with jitter, so that the many clients
// that lost one server (a restart, a crash) do not all come back at the
// same instant, and none waits long once the server is back.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Jitter is the fraction by which a delay may be shorter or longer than
// its nominal value.
const Jitter = 0.25

// Backoff is one loop's retry delay. The zero value is not usable: set Min
// and Max.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

// Next returns the delay before the next try and doubles the one after,
// up to Max.
func (b *Backoff) Next() time.Duration {
	d := b.next
	if d < b.Min {
		d = b.Min
	}
	b.next = min(2*d, b.Max)
	return jitter(d)
}

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.next = 0 }

// jitter draws a delay uniformly within ±Jitter of d.
func jitter(d time.Duration) time.Duration {
	f := 1 - Jitter + 2*Jitter*rand.Float64()
	return time.Duration(float64(d) * f)
}
