package userspace

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/openbtmm/btmm/client/tunnel"
	"github.com/openbtmm/btmm/client/tunnel/handshake"
)

// host is one in-process rootless host: a tunnel whose TUN is a Device.
type host struct {
	dev *Device
	t   *tunnel.Tunnel
	kp  handshake.KeyPair
	ula netip.Addr
}

func (h *host) peer() tunnel.Peer {
	return tunnel.Peer{
		ULA:       h.ula,
		Endpoints: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), h.t.Port())},
		Static:    h.kp.Public,
	}
}

func startHost(t *testing.T, ula string, psk [32]byte) *host {
	t.Helper()
	h := &host{ula: netip.MustParseAddr(ula)}
	var err error
	if h.kp, err = handshake.GenerateKeyPair(nil); err != nil {
		t.Fatal(err)
	}
	if h.dev, err = NewDevice(h.ula, 0, t.Logf); err != nil {
		t.Fatal(err)
	}
	h.t, err = tunnel.New(tunnel.Config{TUN: h.dev, Static: h.kp, PSK: psk, ULA: h.ula, Logf: t.Logf})
	if err != nil {
		h.dev.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.t.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

// pair starts hosts A (fd00::a) and B (fd00::b), peers of each other.
func pair(t *testing.T) (a, b *host) {
	var psk [32]byte
	copy(psk[:], "the account's pre-shared key....")
	a = startHost(t, "fd00::a", psk)
	b = startHost(t, "fd00::b", psk)
	a.t.SetPeer(b.peer())
	b.t.SetPeer(a.peer())
	return a, b
}

// goroutineLeakCheck fails the test if goroutines started during it are
// still running after the other cleanups (registered later, so run
// earlier). As in the tunnel package's tests.
func goroutineLeakCheck(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines leaked:\n%s", n-before, buf[:runtime.Stack(buf, true)])
		}
	})
}

const nameB = "desktop.alice.members.example.com"

// resolver knows B's name, as the daemon knows its peers'.
func resolver(b *host) func(context.Context, string) (netip.Addr, error) {
	return func(_ context.Context, name string) (netip.Addr, error) {
		if strings.EqualFold(strings.TrimSuffix(name, "."), nameB) {
			return b.ula, nil
		}
		return netip.Addr{}, fmt.Errorf("%q is none of the user's hosts", name)
	}
}

// serveWeb serves HTTP on B's stack at [ULA]:80; the body names the
// client's address as B sees it.
func serveWeb(t *testing.T, b *host) {
	t.Helper()
	ln, err := b.dev.Net().ListenTCPAddrPort(netip.AddrPortFrom(b.ula, 80))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s from B", r.RemoteAddr)
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// serveProxy runs serve (ServeSOCKS5 or ServeHTTPProxy) on a loopback
// port and returns its address.
func serveProxy(t *testing.T, serve func(context.Context, net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func get(t *testing.T, tr *http.Transport, u string) string {
	t.Helper()
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", u, resp.Status, body)
	}
	return string(body)
}

func wantFromA(t *testing.T, body string) {
	t.Helper()
	if !strings.HasPrefix(body, "hello [fd00::a]:") || !strings.HasSuffix(body, " from B") {
		t.Errorf("body %q, want B's greeting to [fd00::a]:port", body)
	}
}

func TestSOCKS5(t *testing.T) {
	goroutineLeakCheck(t)
	a, b := pair(t)
	serveWeb(t, b)
	p := &Proxy{Net: a.dev.Net(), Resolve: resolver(b), Logf: t.Logf}
	addr := serveProxy(t, p.ServeSOCKS5)

	d, err := proxy.SOCKS5("tcp", addr, nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: d.(proxy.ContextDialer).DialContext}
	// x/net/proxy sends the name to the proxy (ATYP 3), as socks5h does.
	wantFromA(t, get(t, tr, "http://"+nameB+"/"))
	// An IPv6 literal (ATYP 4) goes as it is.
	wantFromA(t, get(t, tr, "http://[fd00::b]/"))

	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command("curl", "-sS", "--max-time", "20", "--socks5-hostname", addr, "http://"+nameB+"/").CombinedOutput()
		if err != nil {
			t.Fatalf("curl --socks5-hostname: %v: %s", err, out)
		}
		wantFromA(t, string(out))
	}
}

// connectDial dials address through the HTTP proxy at proxyAddr with
// CONNECT, as clients do for https:// URLs.
func connectDial(ctx context.Context, proxyAddr, address string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", address, address)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, &statusError{resp.StatusCode}
	}
	if br.Buffered() > 0 {
		c.Close()
		return nil, errors.New("data after the CONNECT response")
	}
	return c, nil
}

type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("proxy answered %d", e.code) }

func TestHTTPProxy(t *testing.T) {
	goroutineLeakCheck(t)
	a, b := pair(t)
	serveWeb(t, b)
	p := &Proxy{Net: a.dev.Net(), Resolve: resolver(b), Logf: t.Logf}
	addr := serveProxy(t, p.ServeHTTPProxy)

	t.Run("CONNECT", func(t *testing.T) {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, address string) (net.Conn, error) {
			return connectDial(ctx, addr, address)
		}}
		wantFromA(t, get(t, tr, "http://"+nameB+"/"))
	})
	t.Run("absolute-form", func(t *testing.T) {
		u, _ := url.Parse("http://" + addr)
		wantFromA(t, get(t, &http.Transport{Proxy: http.ProxyURL(u)}, "http://"+nameB+"/"))
	})
	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			target string
			want   int
		}{
			{"192.0.2.1:80", http.StatusForbidden},
			{"[2001:db8::1]:80", http.StatusForbidden},
			{"laptop.bob.members.example.com:80", http.StatusBadGateway},
			{nameB + ":81", http.StatusBadGateway}, // nothing listens: RST
			{nameB, http.StatusBadRequest},         // no port
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c, err := connectDial(ctx, addr, tc.target)
			cancel()
			var se *statusError
			if !errors.As(err, &se) || se.code != tc.want {
				if c != nil {
					c.Close()
				}
				t.Errorf("CONNECT %s: %v, want status %d", tc.target, err, tc.want)
			}
		}
	})
}

// socksRaw sends a SOCKS5 greeting and request to the proxy at addr and
// returns the reply code.
func socksRaw(t *testing.T, addr string, req socksRequest) byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte{5, 1, methodNoAuth}); err != nil {
		t.Fatal(err)
	}
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil || sel != [2]byte{5, methodNoAuth} {
		t.Fatalf("method selection %x, %v", sel, err)
	}
	if _, err := c.Write(appendRequest(nil, req)); err != nil {
		t.Fatal(err)
	}
	var rep [4]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatalf("reply: %v", err)
	}
	return rep[1]
}

func TestSOCKS5Refused(t *testing.T) {
	goroutineLeakCheck(t)
	a, b := pair(t)
	serveWeb(t, b)
	p := &Proxy{
		Net:     a.dev.Net(),
		Resolve: resolver(b),
		Peer:    func(u netip.Addr) bool { return u == b.ula },
		Logf:    t.Logf,
	}
	addr := serveProxy(t, p.ServeSOCKS5)
	for _, tc := range []struct {
		name string
		req  socksRequest
		want byte
	}{
		{"IPv4", socksRequest{cmd: cmdConnect, atyp: atypIPv4, addr: netip.MustParseAddr("192.0.2.1"), port: 80}, RepAddrNotSupported},
		{"IPv4 literal as name", socksRequest{cmd: cmdConnect, atyp: atypDomain, host: "192.0.2.1", port: 80}, RepNotAllowed},
		{"global IPv6", socksRequest{cmd: cmdConnect, atyp: atypIPv6, addr: netip.MustParseAddr("2001:db8::1"), port: 80}, RepNotAllowed},
		{"unknown name", socksRequest{cmd: cmdConnect, atyp: atypDomain, host: "laptop.bob.members.example.com", port: 80}, RepHostUnreachable},
		{"ULA of no peer", socksRequest{cmd: cmdConnect, atyp: atypIPv6, addr: netip.MustParseAddr("fd00::c"), port: 80}, RepHostUnreachable},
		{"closed port", socksRequest{cmd: cmdConnect, atyp: atypDomain, host: nameB, port: 81}, RepConnectionRefused},
		{"BIND", socksRequest{cmd: 2, atyp: atypDomain, host: nameB, port: 80}, RepCommandNotSupported},
		{"UDP ASSOCIATE", socksRequest{cmd: 3, atyp: atypIPv6, addr: b.ula, port: 80}, RepCommandNotSupported},
		{"open port", socksRequest{cmd: cmdConnect, atyp: atypDomain, host: nameB, port: 80}, RepSucceeded},
	} {
		if got := socksRaw(t, addr, tc.req); got != tc.want {
			t.Errorf("%s: reply %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestSOCKS5Timeout: a ULA the tunnel has no peer for swallows the SYN;
// without Proxy.Peer the client learns it at DialTimeout.
func TestSOCKS5Timeout(t *testing.T) {
	goroutineLeakCheck(t)
	a, b := pair(t)
	p := &Proxy{Net: a.dev.Net(), Resolve: resolver(b), DialTimeout: 200 * time.Millisecond, Logf: t.Logf}
	addr := serveProxy(t, p.ServeSOCKS5)
	req := socksRequest{cmd: cmdConnect, atyp: atypIPv6, addr: netip.MustParseAddr("fd00::c"), port: 80}
	if got := socksRaw(t, addr, req); got != RepHostUnreachable {
		t.Errorf("reply %d, want %d", got, RepHostUnreachable)
	}
}

func TestForward(t *testing.T) {
	goroutineLeakCheck(t)
	a, b := pair(t)

	// A local TCP echo service on B's machine, as sshd would be.
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() { echo.Close(); <-echoDone })

	f, err := b.dev.Forward(22, echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if want := netip.MustParseAddrPort("[fd00::b]:22"); f.Addr() != want {
		t.Errorf("Addr %v, want %v", f.Addr(), want)
	}

	roundTrip := func(t *testing.T, c net.Conn) {
		t.Helper()
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		msg := strings.Repeat("SSH-2.0-OpenSSH_9.6\r\n", 500) // several segments
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil || string(got) != msg {
			t.Fatalf("echo: %d octets back (%v), want %d", len(got), err, len(msg))
		}
	}

	t.Run("netstack", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := a.dev.Net().DialContextTCPAddrPort(ctx, f.Addr())
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c)
	})
	t.Run("SOCKS5", func(t *testing.T) {
		// ssh -o ProxyCommand='nc -X 5 -x PROXY %h %p' desktop...
		p := &Proxy{Net: a.dev.Net(), Resolve: resolver(b), Logf: t.Logf}
		d, err := proxy.SOCKS5("tcp", serveProxy(t, p.ServeSOCKS5), nil, proxy.Direct)
		if err != nil {
			t.Fatal(err)
		}
		c, err := d.Dial("tcp", nameB+":22")
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c)
	})
	t.Run("closed", func(t *testing.T) {
		f.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if c, err := a.dev.Net().DialContextTCPAddrPort(ctx, f.Addr()); err == nil {
			c.Close()
			t.Fatal("dial after Forwarder.Close succeeded")
		}
	})
}

func TestNewDevice(t *testing.T) {
	goroutineLeakCheck(t)
	for _, bad := range []string{"192.0.2.1", "2001:db8::1", "fe80::1", "::ffff:10.0.0.1"} {
		if d, err := NewDevice(netip.MustParseAddr(bad), 0, nil); err == nil {
			d.Close()
			t.Errorf("NewDevice(%s) succeeded", bad)
		}
	}
	if d, err := NewDevice(netip.MustParseAddr("fd00::1"), 1000, nil); err == nil {
		d.Close()
		t.Error("NewDevice with MTU 1000 succeeded")
	}
	d, err := NewDevice(netip.MustParseAddr("fd00::1"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.MTU() != 1432 || d.BatchSize() != 1 {
		t.Errorf("MTU %d BatchSize %d", d.MTU(), d.BatchSize())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := d.Read([][]byte{make([]byte, 2000)}, []int{0}); err == nil {
		t.Error("Read after Close succeeded")
	}
	if err := d.Write([][]byte{make([]byte, 100)}); err == nil {
		t.Error("Write after Close succeeded")
	}
	if _, err := d.Forward(22, "127.0.0.1:22"); err == nil {
		t.Error("Forward after Close succeeded")
	}
}

func TestProxyListenerNotLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Skip(err)
	}
	defer ln.Close()
	p := &Proxy{}
	if err := p.ServeSOCKS5(context.Background(), ln); err == nil {
		t.Error("ServeSOCKS5 on 0.0.0.0 succeeded")
	}
	if err := p.ServeHTTPProxy(context.Background(), ln); err == nil {
		t.Error("ServeHTTPProxy on 0.0.0.0 succeeded")
	}
}
