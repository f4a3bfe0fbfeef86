package portmap

import "time"

// epochSlack is how far below the expected SSSoE a gateway's may be
// before it is taken as a reboot (RFC 6886 §3.6).
const epochSlack = 2 * time.Second

// epochTracker applies RFC 6886 §3.6's check to one gateway's "seconds
// since start of epoch" (SSSoE). Its zero value has seen nothing. It is not
// safe for concurrent use: Run's goroutine owns it.
type epochTracker struct {
	valid bool
	last  uint32    // SSSoE of the last packet from the gateway
	at    time.Time // local time it arrived
}

// observe records that a packet with SSSoE sssoe arrived at now, and
// reports whether the gateway has lost its mapping state since the
// previous packet: whether sssoe is more than 2 s below
//
//	last + 7/8 × (now − at)
//
// the conservative estimate of what the gateway's clock should read by
// now. Checking only for a decrease would miss a reboot followed by more
// uptime than there was before it, and a gateway whose epoch grew much less
// than our clock did (it rebooted some time ago).
func (e *epochTracker) observe(sssoe uint32, now time.Time) (lost bool) {
	if e.valid {
		elapsed := now.Sub(e.at)
		if elapsed < 0 {
			elapsed = 0
		}
		expected := time.Duration(e.last)*time.Second + elapsed/8*7
		lost = time.Duration(sssoe)*time.Second+epochSlack < expected
	}
	e.valid, e.last, e.at = true, sssoe, now
	return lost
}
