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

// IsDoubleNAT reports whether err is (or wraps) a NAT-PMP result 3 or a
// PCP result 7, "network failure": the gateway has no external address of
// its own, which in practice means it sits behind another NAT (RFC 6281
// §4.4), where a mapping would be useless.
func IsDoubleNAT(err error) bool {
	var re *ResultError
	var pe *PCPResultError
	return errors.As(err, &re) && re.Code == ResultNetworkFailure ||
		errors.As(err, &pe) && pe.Code == PCPNetworkFailure
}

// NoNATPMPError says the gateway did not answer the port mapping
// protocols asked (NAT-PMP alone unless Protocols says otherwise): no
// response after every retransmission, an ICMP port unreachable, a
// gateway that does not speak the protocol's version, or no UPnP IGD
// found. Per RFC 6886 §3.8 and RFC 6281 §4.1 this is not a fault but a
// routed (public) network, so it should not be logged as an error.
type NoNATPMPError struct {
	Gateway netip.Addr
	// Err is ErrNoAnswer, the ECONNREFUSED that reports an ICMP port
	// unreachable, or (PCP) errPCPVersion, "unsupported version".
	Err error
	// Protocols are the protocols that went unanswered; nil means
	// NAT-PMP.
	Protocols []Protocol
}

// ErrNoAnswer is the NoNATPMPError.Err of a gateway that stayed silent.
var ErrNoAnswer = errors.New("no answer")

func (e *NoNATPMPError) Error() string {
	why := e.Err.Error()
	if errors.Is(e.Err, syscall.ECONNREFUSED) {
		why = "port unreachable"
	}
	what := "NAT-PMP"
	if len(e.Protocols) > 0 {
		what = protocolList(e.Protocols)
	}
	return fmt.Sprintf("portmap: no %s at %v: %s", what, e.Gateway, why)
}

func (e *NoNATPMPError) Unwrap() error { return e.Err }

// IsNoNATPMP reports whether err is (or wraps) a *NoNATPMPError.
func IsNoNATPMP(err error) bool {
	var ne *NoNATPMPError
	return errors.As(err, &ne)
}
