package esp

// Drop is why Open rejected a packet. It is an error, so it travels the usual
// way, but it is a small integer: returning it never allocates, and
// [DropCounts] indexes an array with it. Drops are expected on the Internet
// (scans, replays, stale SAs after a rekey); count them and continue, and log
// at debug level at most.
type Drop uint8

const (
	// ErrMalformed: too short, or a ciphertext length that is not a
	// multiple of 4. Nothing was decrypted.
	ErrMalformed Drop = iota + 1
	// ErrSPI: the packet's SPI is not this SA's (the caller looked up the
	// wrong SA). Nothing was decrypted.
	ErrSPI
	// ErrReplay: the sequence number was seen already or is too old for
	// the window. Nothing was decrypted.
	ErrReplay
	// ErrAuth: the ICV did not verify (forged, corrupted, wrong key, or
	// wrong ESN high half). The window is unchanged.
	ErrAuth
	// ErrPadding: authentic, but Pad Length or the padding is wrong.
	ErrPadding
	// ErrNextHeader: authentic, but it carries neither IPv6 nor IPv4.
	ErrNextHeader
	// ErrDummy: authentic dummy packet (Next Header 59, RFC 4303 §2.6);
	// discard silently, it is not a fault.
	ErrDummy

	numDrops
)

var dropText = [numDrops]string{
	ErrMalformed:  "esp: malformed packet",
	ErrSPI:        "esp: SPI does not match the SA",
	ErrReplay:     "esp: replayed or too old",
	ErrAuth:       "esp: authentication failed",
	ErrPadding:    "esp: bad padding",
	ErrNextHeader: "esp: unexpected next header",
	ErrDummy:      "esp: dummy packet",
}

func (d Drop) Error() string {
	if d < numDrops && dropText[d] != "" {
		return dropText[d]
	}
	return "esp: drop"
}

// DropCounts counts Open's drops by reason, for statistics and metrics. The
// zero value is ready. Like the SA, it belongs to one sequential stage.
type DropCounts [numDrops]uint64

// Add counts err if it is a Drop and reports whether it was.
func (c *DropCounts) Add(err error) bool {
	d, ok := err.(Drop)
	if ok && d < numDrops {
		c[d]++
	}
	return ok
}

// Get returns how many drops of kind d were counted.
func (c *DropCounts) Get(d Drop) uint64 {
	if d >= numDrops {
		return 0
	}
	return c[d]
}
