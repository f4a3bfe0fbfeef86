// Package replay implements the ESP anti-replay window with 64-bit extended
// sequence numbers (ESN), RFC 4303 §3.4.3 and Appendix A2, and the matching
// sender-side counter (§2.2, §3.3.3).
//
// Unlike a single check-and-set filter, ESP splits the receive side in two
// (RFC 4303 §3.4.3). [Window.Check] runs before the ICV
// (AEAD tag) is verified. It infers the full 64-bit sequence number from the
// 32 bits on the wire, because the AEAD's AAD needs the high-order half, and
// it changes nothing. [Window.Accept] runs only after the ICV has verified,
// so a forged packet can never move the window and push genuine traffic out
// of it.
//
//	seq, ok := w.Check(seqLow)  // drop if !ok
//	open AEAD with AAD = SPI ‖ seq (64 bits, big-endian)  // drop on failure
//	if !w.Accept(seq) { drop }  // a duplicate got through in the meantime
package replay

import "math"

// WindowSize is the number of sequence numbers the receive window spans: a
// packet is accepted if it has not been seen and is at most WindowSize-1
// below the highest authenticated sequence number. RFC 4303 §3.4.3 asks for at
// least 32 and prefers 64. That is too small for a tunnel whose packets are
// reordered by parallel decryption or by the network at gigabit rates, and
// the receiver never has to tell the sender its size. It must be a power of
// two and a multiple of 64 (checked at compile time below).
const WindowSize = 1024

const (
	blockBitLog = 6                // log2 of the bits in one bitmap word
	blockBits   = 1 << blockBitLog // 64 sequence numbers per uint64
	blockMask   = blockBits - 1

	// The window [T-WindowSize+1, T] straddles up to WindowSize/blockBits+1
	// words when T is not the last bit of its word. The ring therefore needs
	// one more word than the window. Going up to the next power of two turns
	// the ring index into a mask, at the price of 128 spare bytes.
	ringBlocks = 2 * WindowSize / blockBits
	ringMask   = ringBlocks - 1
)

// Compile-time checks: each constant overflows uint (a compile error) unless
// its condition holds.
const (
	_ uint = -(WindowSize & (WindowSize - 1)) // WindowSize is a power of two
	_ uint = -(WindowSize & blockMask)        // and a whole number of words
)

// Window is the receive side's anti-replay state for one inbound SA with ESN.
// Its zero value is ready to use: nothing received yet, so the first expected
// sequence number is 1. A Window is unsafe for concurrent use. Give it to the
// one sequential stage that owns the SA, as wireguard-go's receiver owns its
// replay filter.
type Window struct {
	// highest is T, the highest sequence number whose ICV verified (0 before
	// the first packet). It is the window's right edge.
	highest uint64
	// ring holds one bit per sequence number, at word (seq/64)%ringBlocks
	// and bit seq%64. It is only meaningful inside the window. Invariant:
	// no bit for a number above highest is set, because Accept clears each
	// word as the right edge enters it.
	ring [ringBlocks]uint64
}

// Check infers the full 64-bit sequence number of a packet from the 32
// low-order bits on the wire (RFC 4303 Appendix A2.2). It reports whether a
// packet with that number may go on to ICV verification, meaning it has not
// been seen. Check changes nothing, so calling it twice, or for a packet that
// then fails the ICV, is harmless.
//
// The inference places seq in [T-WindowSize+1, T-WindowSize+2^32]. A number
// below the window therefore never shows up as too old: it is read as the
// next 2^32 subspace. Its ICV then fails, because the high 32 bits in the AAD
// are wrong. This is the RFC's design, not a gap. Check itself rejects only a
// seq that is already marked, and the two inferences with no 64-bit value:
// below 1 (the window has not reached 2^32 yet, so there is no earlier
// subspace) and above 2^64-1. It returns seq = 0 for those two.
func (w *Window) Check(seqLow uint32) (seq uint64, ok bool) {
	th, tl := uint32(w.highest>>32), uint32(w.highest)
	// Bl = Tl-W+1, the window's bottom edge, mod 2^32 as in the RFC.
	bl := tl - (WindowSize - 1)
	seqHigh := th
	if tl >= WindowSize-1 {
		// Case A: the window lies inside one subspace. A number below it
		// is taken as ahead, in the next subspace.
		if seqLow < bl {
			if th == math.MaxUint32 {
				return 0, false // would be past 2^64-1: the sender must have rekeyed
			}
			seqHigh = th + 1
		}
	} else {
		// Case B: the window reaches down into the previous subspace, and
		// Bl has wrapped to near 2^32. A number at or above it belongs to
		// that subspace.
		if seqLow >= bl {
			if th == 0 {
				// The RFC would give Seqh = -1. Nothing was ever sent there:
				// the window is still below 2^32, and this is at best a
				// packet from before the SA's first one.
				return 0, false
			}
			seqHigh = th - 1
		}
	}
	seq = uint64(seqHigh)<<32 | uint64(seqLow)
	if seq > w.highest {
		return seq, true // new right edge, tentatively
	}
	// By the inference above, seq >= T-WindowSize+1, so it is inside the
	// window and its bit is live. Sequence number 0 is never sent
	// (§2.2: the first packet carries 1). It can only come from
	// Seql = 0 while T < 2^32.
	if seq == 0 {
		return 0, false
	}
	return seq, !w.seen(seq)
}

// Accept records seq, as returned by Check, as received. Call it only after
// the packet's ICV has verified (RFC 4303 §3.4.3): the window must never move
// on an unauthenticated packet. A seq above the highest moves the right edge
// to it and forgets whatever slides out of the window.
//
// Accept checks everything again and returns false (recording nothing) if seq
// is 0, below the window, or already marked. That can happen when two copies
// of a packet, or a packet and a large jump ahead, were checked before either
// was accepted. The caller must then drop the packet. Accept takes the full
// seq rather than the wire bits. The high half was authenticated by the ICV,
// so the inference must not be redone against a window that has moved since
// Check.
func (w *Window) Accept(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if seq > w.highest {
		cur, next := w.highest>>blockBitLog, seq>>blockBitLog
		if next-cur >= ringBlocks {
			// The jump leaves every word behind: start afresh.
			w.ring = [ringBlocks]uint64{}
		} else {
			// Clear the words the right edge enters. They still hold bits
			// of numbers ringBlocks words older, now out of the window.
			// cur's own word is already clean above highest (invariant).
			for i := cur + 1; i <= next; i++ {
				w.ring[i&ringMask] = 0
			}
		}
		w.highest = seq
	} else if w.highest-seq >= WindowSize {
		return false // fell out of the window since Check
	}
	word, bit := &w.ring[(seq>>blockBitLog)&ringMask], uint64(1)<<(seq&blockMask)
	if *word&bit != 0 {
		return false
	}
	*word |= bit
	return true
}

// seen reports whether seq's bit is set. seq must be inside the window.
func (w *Window) seen(seq uint64) bool {
	return w.ring[(seq>>blockBitLog)&ringMask]&(uint64(1)<<(seq&blockMask)) != 0
}

// Highest returns the highest sequence number accepted so far (the window's
// right edge T), or 0 if none has been. Tests and statistics use it. An
// A3-style resynchronisation after 2^32 lost packets would too.
func (w *Window) Highest() uint64 {
	return w.highest
}

// Reset returns the window to its zero value, as if nothing had been
// received. Only call it when the SA is rekeyed: the sequence numbers of a
// fresh SA start at 1 again (§3.3.3). Resetting under a live key would let
// every old packet in again.
func (w *Window) Reset() {
	*w = Window{}
}

// Counter is the sender's 64-bit ESN counter for one outbound SA. Its zero
// value is ready: the counter is 0 when the SA is created, and the first
// packet carries 1 (RFC 4303 §2.2). A Counter is unsafe for concurrent use.
type Counter struct {
	last uint64 // the sequence number of the last packet sent; 0 before the first
}

// Next returns the sequence number for the next outbound packet. With
// anti-replay on, the counter must never cycle (§2.2, §3.3.3). Once 2^64-1
// has been handed out, Next returns ok = false from then on. The SA must then
// be replaced by a rekeyed one, and the attempt is an auditable event. In
// practice rekeying happens long before this, by time or packet count.
func (c *Counter) Next() (seq uint64, ok bool) {
	if c.last == math.MaxUint64 {
		return 0, false
	}
	c.last++
	return c.last, true
}

// Low returns the low-order 32 bits of an extended sequence number: the
// Sequence Number field sent in the ESP header (RFC 4303 §2.2.1). The high
// 32 bits are never sent. They go into the ICV only, as part of the AAD
// (SPI ‖ seq as 64 bits big-endian, RFC 4106 §5, RFC 7634 §2.1).
func Low(seq uint64) uint32 {
	return uint32(seq)
}
