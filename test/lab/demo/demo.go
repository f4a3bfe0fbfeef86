// Package demo runs the whole system on one machine, in the network lab:
// the server (bin/coredns) on the lab's internet, and two hosts of one
// user behind two NATs, each running bin/btmm-client; and it tells in
// plain words what happens. It is `make demo` (btmm-lab demo).
package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/daemon"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/test/coredns"
	"github.com/openbtmm/btmm/test/lab"
)

// Options locate the binaries and say where to tell the story.
type Options struct {
	Bin  string    // the directory with coredns and btmm-client (bin/)
	Out  io.Writer // the story
	Logf lab.Logf  // the lab's own log (nil: none)
}

const (
	zone = "members.example.com"
	user = "alice"
)

// Run builds a lab, runs the server and two clients in it, shows them
// finding each other, moves one NAT to a new address, stops everything
// cleanly and removes the lab. It returns the first thing that went wrong.
func Run(ctx context.Context, o Options) (err error) {
	say := func(format string, a ...any) { fmt.Fprintf(o.Out, "• "+format+"\n", a...) }
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	for _, b := range []string{"coredns", "btmm-client"} {
		if _, err := os.Stat(filepath.Join(o.Bin, b)); err != nil {
			return fmt.Errorf("%s is missing: run make build first", filepath.Join(o.Bin, b))
		}
	}
	l, err := lab.New(o.Logf, lab.Options{})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if left, err := lab.Running(); err == nil && !slices.Contains(left, l.Prefix) {
			say("The lab is gone: no namespace, no process left behind.")
		}
	}()
	say("A lab: an internet (23.0.0.0/8), the DNS server at %s, home A behind a NAT at %s, home B behind a NAT at %s; both NATs speak NAT-PMP (miniupnpd).",
		l.Addr("server"), l.WAN("routerA"), l.WAN("routerB"))

	dir, err := os.MkdirTemp("", "btmm-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	key := keyfile.Key{Name: user + "." + zone + ".", Algorithm: dns.HmacSHA256, Secret: base64.StdEncoding.EncodeToString(random(32))}
	if err := os.WriteFile(filepath.Join(dir, "users.keys"), keyfile.Format([]keyfile.Key{key}), 0o600); err != nil {
		return err
	}
	if err := writeCert(dir, l.Addr("server")); err != nil {
		return err
	}

	server, err := startServer(l, dir, o.Bin)
	if err != nil {
		return err
	}
	defer server.stop()
	say("The server answers for %s: updates over TLS on port 853, long-lived queries over TLS on 5353, found by SRV records.", zone)

	desktop, err := startClient(l, dir, o.Bin, "hostA", "desktop")
	if err != nil {
		return err
	}
	defer desktop.stop()
	laptop, err := startClient(l, dir, o.Bin, "hostB", "laptop")
	if err != nil {
		return err
	}
	defer laptop.stop()

	for _, c := range []*client{desktop, laptop} {
		st, err := c.waitStatus(ctx, 10*time.Second, func(st daemon.Status) bool { return !st.Publish.Published.IsZero() })
		if err != nil {
			return fmt.Errorf("%s did not register: %w\n%s", c.host, err, c.out)
		}
		ext, _ := netip.ParseAddrPort(st.Mapping.External)
		say("%s (in %s) is registered as %s: its NAT mapped port %d to it (NAT-PMP), so it is reachable at %s; its tunnel address is %s.",
			c.host, c.ns, st.Host, ext.Port(), ext, st.ULA)
	}
	for _, pair := range [][2]*client{{laptop, desktop}, {desktop, laptop}} {
		watcher, other := pair[0], pair[1]
		st, err := watcher.waitStatus(ctx, 5*time.Second, func(st daemon.Status) bool { return hasPeer(st, other.host, "") })
		if err != nil {
			return fmt.Errorf("%s does not see %s: %w", watcher.host, other.host, err)
		}
		for _, p := range st.Peers {
			say("%s sees its peer %s at %s (pushed by a long-lived query).", watcher.host, p.Host, p.Public)
		}
	}

	next := netip.MustParseAddr("23.1.1.77")
	say("Home A's NAT gets a new public address, %s, and announces it...", next)
	changed := time.Now()
	if err := l.SetWAN("routerA", next); err != nil {
		return err
	}
	if _, err := laptop.waitStatus(ctx, 10*time.Second, func(st daemon.Status) bool { return hasPeer(st, desktop.host, next.String()) }); err != nil {
		return fmt.Errorf("the laptop did not hear of the desktop's new address: %w", err)
	}
	say("...the desktop republished at once, and the laptop knew %v later.", time.Since(changed).Round(time.Millisecond))

	laptop.stop()
	say("The laptop stopped cleanly: its records and its NAT mapping are removed.")
	if _, err := desktop.waitStatus(ctx, 5*time.Second, func(st daemon.Status) bool { return len(st.Peers) == 0 }); err != nil {
		return fmt.Errorf("the desktop still lists the laptop: %w", err)
	}
	say("The desktop saw it go.")
	desktop.stop()
	server.stop()
	return nil
}

func hasPeer(st daemon.Status, host, addr string) bool {
	for _, p := range st.Peers {
		if strings.HasPrefix(p.Host, host+".") && (addr == "" || p.Public.Addr().String() == addr) {
			return true
		}
	}
	return false
}

// proc is a process in a lab namespace.
type proc struct {
	cmd  *exec.Cmd
	out  *coredns.Output
	done chan struct{}
}

func start(l *lab.Lab, ns string, out *coredns.Output, name string, args ...string) (*proc, error) {
	p := &proc{out: out, done: make(chan struct{})}
	p.cmd = l.Exec(ns, name, args...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop ends the process with SIGTERM (then SIGKILL after 10 s); again is
// harmless.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func startServer(l *lab.Lab, dir, bin string) (*proc, error) {
	ip := l.Addr("server")
	block := func(addr, extra string) string {
		return fmt.Sprintf(`%s {
%s	btmm %s {
		keys %s/users.keys
		store %s/members.db
		ns ns1.%s. %s
	}
	ddul-lease
	tsig-update
	srv-discovery {
		update ns1.%s. 853 tls
		llq    ns1.%s. 5353 tls
	}
`, addr, extra, zone, dir, dir, zone, ip, zone, zone)
	}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cf := block(zone+":53", "") + fmt.Sprintf("\tllq {\n\t\tudp :5352\n\t\ttcp :5352\n\t\ttls :5353 %s %s\n\t}\n}\n", cert, key) +
		block("tls://"+zone+":853", "\ttls "+cert+" "+key+"\n") + "}\n"
	path := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		return nil, err
	}
	p, err := start(l, "server", &coredns.Output{}, filepath.Join(bin, "coredns"), "-conf", path)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := l.Go("server", func() error {
			_, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(new(dns.Msg).SetQuestion(zone+".", dns.TypeSOA), net.JoinHostPort(ip.String(), "53"))
			return err
		})
		if err == nil {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("the server did not start: %v\n%s", err, p.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client is one bin/btmm-client in a host namespace.
type client struct {
	*proc
	host, ns, socket string
}

func startClient(l *lab.Lab, dir, bin, ns, host string) (*client, error) {
	state := filepath.Join(dir, host)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	c := &client{host: host, ns: ns, socket: filepath.Join(state, "status.sock")}
	conf := fmt.Sprintf("zone = %q\nuser = %q\nhost = %q\nkey = %q\nstate_dir = %q\nserver = \"%s:53\"\ntls_ca = %q\nstatus_socket = %q\n",
		zone, user, host, filepath.Join(dir, "users.keys"), state, l.Addr("server"), filepath.Join(dir, "cert.pem"), c.socket)
	path := filepath.Join(state, "client.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p, err := start(l, ns, &coredns.Output{}, filepath.Join(bin, "btmm-client"), "run", "--config", path)
	if err != nil {
		return nil, err
	}
	c.proc = p
	return c, nil
}

// waitStatus polls the client's status until ok, or fails after within.
func (c *client) waitStatus(ctx context.Context, within time.Duration, ok func(daemon.Status) bool) (daemon.Status, error) {
	deadline := time.Now().Add(within)
	for {
		st, err := daemon.Fetch(c.socket)
		if err == nil && ok(st) {
			return st, nil
		}
		select {
		case <-c.done:
			return st, errors.New("btmm-client exited:\n" + c.out.String())
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("not within %v", within)
		}
	}
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// writeCert makes the server's certificate (cert.pem, key.pem in dir),
// which the clients trust as their CA.
func writeCert(dir string, ip netip.Addr) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ns1." + zone},
		DNSNames: []string{"ns1." + zone}, IPAddresses: []net.IP{ip.AsSlice()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
}
