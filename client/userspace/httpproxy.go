package userspace

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
)

// httpStatus is the status for a failed dial.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, ErrNotInTunnel):
		return http.StatusForbidden
	case errors.Is(err, ErrTimeout):
		return http.StatusGatewayTimeout
	}
	// ErrUnknownHost, ErrNotPeer, ErrUnreachable, ErrRefused and the rest.
	return http.StatusBadGateway
}

// ServeHTTPProxy serves an HTTP proxy on ln until ctx ends, then closes ln
// and every connection and returns nil once the handlers are done. ln
// must be on a loopback address.
//
// CONNECT host:port opens a tunnel to host (a name for Resolve or an IP
// literal) as SOCKS5 does; this is what clients use for https:// URLs. A
// request in absolute form (GET http://host/...), what clients send for
// plain http:// URLs through a proxy (http_proxy=), is forwarded. A target
// outside the tunnel gets 403 Forbidden; an unknown name, a ULA that is no
// peer, a refused or unreachable connection 502 Bad Gateway; a peer that
// does not answer in time 504 Gateway Timeout.
func (p *Proxy) ServeHTTPProxy(ctx context.Context, ln net.Listener) error {
	if err := checkLoopback(ln); err != nil {
		return err
	}
	var hijacked connSet
	var handlers group
	tr := &http.Transport{
		Proxy:             nil,
		DialContext:       p.DialContext,
		ForceAttemptHTTP2: false,
		MaxIdleConns:      16,
		IdleConnTimeout:   DefaultDialTimeout,
	}
	forward := &httputil.ReverseProxy{
		// The request is already in absolute form: leave it as it is. The
		// hop-by-hop headers are removed by ReverseProxy.
		Rewrite:   func(*httputil.ProxyRequest) {},
		Transport: tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.logf("http proxy %v: %s %v: %v", r.RemoteAddr, r.Method, r.URL, err)
			http.Error(w, err.Error(), httpStatus(err))
		},
	}
	srv := &http.Server{
		ReadHeaderTimeout: HandshakeTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !handlers.enter() {
				http.Error(w, "shutting down", http.StatusServiceUnavailable)
				return
			}
			defer handlers.exit()
			switch {
			case r.Method == http.MethodConnect:
				p.handleConnect(w, r, &hijacked)
			case r.URL.IsAbs() && r.URL.Scheme == "http" && r.URL.Host != "":
				forward.ServeHTTP(w, r)
			default:
				w.Header().Set("Allow", http.MethodConnect)
				http.Error(w, "this is a proxy: CONNECT, or a request for an absolute http:// URL", http.StatusMethodNotAllowed)
			}
		}),
		ErrorLog: nil,
	}
	stop := context.AfterFunc(ctx, func() {
		srv.Close()
		hijacked.closeAll()
	})
	defer stop()
	err := srv.Serve(ln)
	srv.Close()
	hijacked.closeAll()
	handlers.closeAndWait()
	tr.CloseIdleConnections()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (p *Proxy) handleConnect(w http.ResponseWriter, r *http.Request, hijacked *connSet) {
	// For CONNECT the request target is the authority, host:port (RFC
	// 9110 §9.3.6), in r.Host.
	host, port, err := splitHostPort(r.Host)
	if err != nil {
		http.Error(w, fmt.Sprintf("bad CONNECT target %q: %v", r.Host, err), http.StatusBadRequest)
		return
	}
	out, err := p.dial(r.Context(), host, port)
	if err != nil {
		p.logf("http proxy %v: CONNECT %s: %v", r.RemoteAddr, r.Host, err)
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		out.Close()
		http.Error(w, "cannot hijack the connection", http.StatusInternalServerError)
		return
	}
	if !hijacked.add(c) {
		c.Close()
		out.Close()
		return
	}
	defer hijacked.remove(c)
	defer c.Close()
	if _, err := c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		out.Close()
		return
	}
	// The client may have sent data after the request (a TLS ClientHello,
	// optimistically): it is in brw's buffer, not in c.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := out.Write(b); err != nil {
			out.Close()
			return
		}
	}
	relay(c, out, hijacked)
}

// group is a sync.WaitGroup that refuses new members once closing, so
// that Add never races with Wait.
type group struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (g *group) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *group) exit() { g.wg.Done() }

func (g *group) closeAndWait() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}
