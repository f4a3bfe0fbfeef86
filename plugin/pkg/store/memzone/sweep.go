package memzone

import "time"

// RunSweeper runs an engine's sweeps until stop is closed: when the
// earliest lease ends (next, under the engine's lock), so that the delete
// (and its serial bump and event) comes as the record stops being served;
// when wake says a commit may have set an earlier one; and at least every
// interval, in case the clock jumped. A failed sweep is tried again at the
// next wake-up: a store that cannot write fails its updates too, which
// are logged.
func RunSweeper(stop, wake <-chan struct{}, every time.Duration, now func() time.Time, next func() (time.Time, bool), sweep func()) {
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-wake:
		case <-t.C:
			sweep()
		}
		wait := every
		if at, ok := next(); ok {
			wait = min(wait, max(at.Sub(now()), 0))
		}
		t.Reset(wait)
	}
}
