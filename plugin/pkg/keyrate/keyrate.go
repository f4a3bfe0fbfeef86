// Package keyrate limits, per TSIG key (or per client address for unsigned
// requests), how often one user may make the server work: UPDATEs in
// tsig-update, LLQ setups in llq. One user's flood, from a broken or
// hostile client holding a valid key, then costs the server little and
// cannot take the store's commits or the LLQ table from the others.
package keyrate

import (
	"math"
	"strconv"
	"sync"

	"github.com/coredns/caddy"
	"golang.org/x/time/rate"
)

// Limiter holds a token bucket for each key that has made a request. The
// keys are the users' (the key file's) or, for unsigned requests, client
// addresses, which an LLQ server bounds by their live LLQs. The zero
// rate, and a nil Limiter, limit nothing.
type Limiter struct {
	limit rate.Limit // 0: no limit
	burst int

	mu      sync.Mutex
	buckets map[string]*keyRate
}

// keyRate is one key's bucket, and how often a request over the rate is
// answered rather than dropped.
type keyRate struct {
	updates, answers *rate.Limiter
}

// New returns a Limiter of perSecond requests per key, in bursts of up to
// burst.
func New(perSecond float64, burst int) *Limiter {
	return &Limiter{limit: rate.Limit(perSecond), burst: burst, buckets: make(map[string]*keyRate)}
}

// Allow takes one request from key's bucket and reports whether there was
// one to take; if not, answer says whether to answer it (with a refusal,
// once a second) or, where the protocol allows, to drop it unanswered. Dropping is what makes a flood cheap,
// as in BIND's response-rate limiting: the flooding senders wait for
// their timeouts instead of sending again at once, and the server signs
// no reply; the one answer a second tells a client that is merely too
// eager why it is not heard.
func (k *Limiter) Allow(key string) (ok, answer bool) {
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

// Limit returns the rate per second and the burst.
func (k *Limiter) Limit() (perSecond float64, burst int) {
	if k == nil {
		return 0, 0
	}
	return float64(k.limit), k.burst
}

// ParseProperty reads the arguments of a Corefile's rate property,
// PER_SECOND [BURST], the burst five times the rate by default; "0" turns
// the limit off. Its errors are c's, naming the place in the Corefile.
func ParseProperty(c *caddy.Controller, args []string) (*Limiter, error) {
	if len(args) < 1 || len(args) > 2 {
		return nil, c.ArgErr()
	}
	perSecond, err := strconv.ParseFloat(args[0], 64)
	if err != nil || perSecond < 0 || math.IsInf(perSecond, 0) || math.IsNaN(perSecond) {
		return nil, c.Errf("rate needs requests per second per key (0: no limit), not %q", args[0])
	}
	burst := max(int(perSecond)*5, 1)
	if len(args) == 2 {
		if burst, err = strconv.Atoi(args[1]); err != nil || burst < 1 {
			return nil, c.Errf("rate's burst needs a positive integer, not %q", args[1])
		}
	}
	return New(perSecond, burst), nil
}
