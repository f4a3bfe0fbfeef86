package updatelease

import (
	"time"

	"github.com/miekg/dns"
)

// Grant is how long the records that one UPDATE adds may live, as the
// server granted it.
type Grant struct {
	Records time.Duration // every record but KEY; 0: until deleted
	Keys    time.Duration // KEY records; 0: until deleted
	// Reply is the option for the OPT RR of a successful reply (the granted
	// lease, RFC 9664 §4.3), or nil when the request asked for none.
	Reply dns.EDNS0
}

// Granter turns the lease an UPDATE asks for into the lease it gets. The
// ddul-lease plugin is one; the plugin that applies UPDATEs finds it in its
// server block and asks it for every UPDATE. Grant returns an error
// wrapping ErrMalformed or ErrDuplicate for a malformed option (FORMERR).
type Granter interface {
	Grant(r *dns.Msg) (Grant, error)
}
