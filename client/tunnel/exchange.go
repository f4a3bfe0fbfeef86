package tunnel

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
)

// An exchange is one datagram sent from the tunnel's socket to an address
// that is no peer (the server, asked for the endpoint it sees), and the
// datagrams that come back from there, which the data path hands over
// instead of taking them for ESP.
type exchange struct {
	addr netip.AddrPort
	got  chan []byte
}

// exchanges holds the one exchange in progress; Exchange runs them one at
// a time.
type exchanges struct {
	mu  sync.Mutex
	cur atomic.Pointer[exchange]
}

// ErrNoSocket says the tunnel has no socket to send from yet (Run has not
// bound it, or it was closed).
var ErrNoSocket = errors.New("tunnel: no socket")

// Exchange sends msg to addr from the tunnel's own UDP socket, so that it
// leaves through the NAT mapping the tunnel's traffic uses, and returns
// the first datagram from addr that accept takes (nil accepts any) before
// ctx ends. The server-observed endpoint (package client/endpoint) is
// asked this way.
func (t *Tunnel) Exchange(ctx context.Context, addr netip.AddrPort, msg []byte, accept func([]byte) bool) ([]byte, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	t.xch.mu.Lock()
	defer t.xch.mu.Unlock()
	x := &exchange{addr: addr, got: make(chan []byte, 8)}
	t.xch.cur.Store(x)
	defer t.xch.cur.Store(nil)
	ep, err := t.bind.ParseEndpoint(addr.String())
	if err != nil {
		return nil, err
	}
	if err := t.bind.Send([][]byte{msg}, ep); err != nil {
		return nil, err
	}
	for {
		select {
		case b := <-x.got:
			if accept == nil || accept(b) {
				return b, nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// exchanged hands b, from src, to the exchange waiting for it, if any,
// and reports whether it did. It is on the data path: one atomic load.
func (t *Tunnel) exchanged(b []byte, src netip.AddrPort) bool {
	x := t.xch.cur.Load()
	if x == nil || x.addr != src {
		return false
	}
	select {
	case x.got <- bytes.Clone(b):
	default:
	}
	return true
}
