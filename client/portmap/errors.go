package portmap

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// ResultError is a NAT-PMP response with a result code other than
// success. It is an expected failure: the gateway speaks NAT-PMP but will
// not (or cannot) do what was asked.
type ResultError struct {
	Op   string     // "external address", "map UDP" or "delete UDP"
	Code ResultCode // never ResultSuccess
}

func (e *ResultError) Error() string {
	return fmt.Sprintf("portmap: NAT-PMP %s: result %d (%v)", e.Op, uint16(e.Code), e.Code)
}

// IsDoubleNAT reports whether err is (or wraps) a NAT-PMP result 3,
// "network failure": the gateway has no external address of its own, which
// in practice means it sits behind another NAT (RFC 6281 §4.4), where a
// mapping would be useless.
func IsDoubleNAT(err error) bool {
	var re *ResultError
	return errors.As(err, &re) && re.Code == ResultNetworkFailure
}

// NoNATPMPError says the gateway did not answer NAT-PMP: no response after
// every retransmission, or an ICMP port unreachable. Per RFC 6886 §3.8 and
// RFC 6281 §4.1 this is not a fault but a routed (public) network, so it
// should not be logged as an error.
type NoNATPMPError struct {
	Gateway netip.Addr
	Err     error // ErrNoAnswer, or the ECONNREFUSED that reports an ICMP port unreachable
}

// ErrNoAnswer is the NoNATPMPError.Err of a gateway that stayed silent.
var ErrNoAnswer = errors.New("no answer")

func (e *NoNATPMPError) Error() string {
	why := e.Err.Error()
	if errors.Is(e.Err, syscall.ECONNREFUSED) {
		why = "port unreachable"
	}
	return fmt.Sprintf("portmap: no NAT-PMP at %v: %s", e.Gateway, why)
}

func (e *NoNATPMPError) Unwrap() error { return e.Err }

// IsNoNATPMP reports whether err is (or wraps) a *NoNATPMPError.
func IsNoNATPMP(err error) bool {
	var ne *NoNATPMPError
	return errors.As(err, &ne)
}
