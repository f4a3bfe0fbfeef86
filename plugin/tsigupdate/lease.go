package tsigupdate

import (
	"context"
	"time"

	"github.com/miekg/dns"
)

// Lease is how long the records that an UPDATE adds may live (RFC 9664):
// ddul-lease grants it and hands it down in the request's context.
type Lease struct {
	Records time.Duration // every record but KEY
	Keys    time.Duration // KEY records
	// Reply is the option to put in the OPT RR of a successful reply (the
	// granted lease, RFC 9664 §4.3), or nil.
	Reply dns.EDNS0
	// Malformed says the request's option was malformed: FORMERR.
	Malformed bool
}

type leaseKey struct{}

// WithLease returns ctx carrying the lease granted to the UPDATE in flight.
func WithLease(ctx context.Context, l Lease) context.Context {
	return context.WithValue(ctx, leaseKey{}, l)
}

// LeaseFrom returns the lease that WithLease put in ctx, and the zero Lease
// if there is none: then records live until an UPDATE deletes them
// (RFC 9664 §4.2).
func LeaseFrom(ctx context.Context) Lease {
	l, _ := ctx.Value(leaseKey{}).(Lease)
	return l
}
