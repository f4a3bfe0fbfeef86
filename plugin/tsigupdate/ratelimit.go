package tsigupdate

import (
	"sync"

	"golang.org/x/time/rate"
)

// Defaults of the per-key rate: a host sends an UPDATE when it starts,
// when its network changes and when its lease is three quarters through,
// so even a user with many hosts that all move at once stays well within
// a burst of 50 and 10 a second after it.
const (
	defaultRate  = 10
	defaultBurst = 50
)

// keyRates holds a token bucket for each key that has sent an UPDATE, so
// that one user's flood of UPDATEs (a broken or hostile client with a
// valid key) is refused cheaply, before it reaches the store, and cannot
// take the store's commits from the other users. The keys are the users'
// (the key file's), so the map is bounded.
type keyRates struct {
	limit rate.Limit // 0: no limit
	burst int

	mu      sync.Mutex
	buckets map[string]*keyRate
}

// keyRate is one key's bucket, and how often an UPDATE over the rate is
// answered rather than dropped.
type keyRate struct {
	updates, answers *rate.Limiter
}

func newKeyRates(perSecond float64, burst int) *keyRates {
	return &keyRates{limit: rate.Limit(perSecond), burst: burst, buckets: make(map[string]*keyRate)}
}

// allow takes one UPDATE from key's bucket and reports whether there was
// one to take; if not, answer says whether to answer it (REFUSED, once a
// second) or to drop it unanswered. Dropping is what makes a flood cheap,
// as in BIND's response-rate limiting: the flooding senders wait for
// their timeouts instead of sending again at once, and the server signs
// no reply; the one answer a second tells a client that is merely too
// eager why it is not heard.
func (k *keyRates) allow(key string) (ok, answer bool) {
	if k == nil || k.limit == 0 {
		return true, true
	}
	k.mu.Lock()
	b := k.buckets[key]
	if b == nil {
		b = &keyRate{updates: rate.NewLimiter(k.limit, k.burst), answers: rate.NewLimiter(1, 1)}
		k.buckets[key] = b
	}
	k.mu.Unlock()
	if b.updates.Allow() {
		return true, true
	}
	return false, b.answers.Allow()
}
