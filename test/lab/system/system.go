// Package system runs the btmm system in a network lab (package lab): the
// server (bin/coredns) in the lab's server namespace and bin/btmm-client in
// host namespaces, as one user of one zone, with a key file, a TLS
// certificate and state directories of their own. The demo and the tunnel
// benchmark are built on it.
package system

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
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/daemon"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/test/coredns"
	"github.com/openbtmm/btmm/test/lab"
)

// The zone and the user every System serves.
const (
	Zone = "members.example.com"
	User = "alice"
)

// System is the server and clients of one user in one lab.
type System struct {
	Lab *lab.Lab
	Bin string // the directory with coredns and btmm-client
	Dir string // key file, certificate, Corefile, the clients' state
	// Enroll, set before the clients start, enrolls each with the user's
	// signing key (btmm-client enroll) before it runs: the hosts then
	// accept each other only by certificates the server cannot make.
	// Off by default, so that an older build (a benchmark's baseline)
	// can be a peer.
	Enroll bool

	procs []*Proc
}

// New checks that the binaries are built and writes the user's key and
// the server's certificate into a new temporary directory.
func New(l *lab.Lab, bin string) (*System, error) {
	if err := Check(bin); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "btmm-system-")
	if err != nil {
		return nil, err
	}
	s := &System{Lab: l, Bin: bin, Dir: dir}
	key := keyfile.Key{Name: User + "." + Zone + ".", Algorithm: dns.HmacSHA256, Secret: base64.StdEncoding.EncodeToString(random(32))}
	if err := os.WriteFile(filepath.Join(dir, "users.keys"), keyfile.Format([]keyfile.Key{key}), 0o600); err != nil {
		s.Close()
		return nil, err
	}
	if err := writeCert(dir, l.Addr("server")); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Check reports a binary missing from bin.
func Check(bin string) error {
	for _, b := range []string{"coredns", "btmm-client"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("%s is missing: run make build first", filepath.Join(bin, b))
		}
	}
	return nil
}

// Close stops every process still running (clients first) and removes
// the directory. It does not close the lab.
func (s *System) Close() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop()
	}
	os.RemoveAll(s.Dir)
}

// Proc is a process in a lab namespace.
type Proc struct {
	Out  *coredns.Output // its stdout and stderr
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs a program in namespace ns, its output in Out; Close stops it
// with the rest.
func (s *System) Start(ns string, name string, args ...string) (*Proc, error) {
	p := &Proc{Out: &coredns.Output{}, done: make(chan struct{})}
	p.cmd = s.Lab.Exec(ns, name, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.Out, p.Out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	s.procs = append(s.procs, p)
	return p, nil
}

// Stop ends the process with SIGTERM (then SIGKILL after 10 s); again is
// harmless.
func (p *Proc) Stop() {
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

// PID is the process's ID (ip netns exec runs the program in its own
// process, not a child).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// StartServer runs bin/coredns in the server namespace (plain DNS on 53,
// updates over TLS on 853, LLQs over TLS on 5353) and waits until it
// answers.
func (s *System) StartServer() (*Proc, error) {
	l, dir := s.Lab, s.Dir
	ip := l.Addr("server")
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cf := fmt.Sprintf(`%s:53 {
	btmm %s {
		keys %s/users.keys
		store %s/members.db
		ns ns1.%s. %s
	}
	ddul-lease
	tsig-update {
		tls :853 %s %s
	}
	srv-discovery {
		update ns1.%s. 853 tls
		llq    ns1.%s. 5353 tls
	}
	llq {
		udp :5352
		tcp :5352
		tls :5353 %s %s
	}
}
`, Zone, Zone, dir, dir, Zone, ip, cert, key, Zone, Zone, cert, key)
	path := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		return nil, err
	}
	p, err := s.Start("server", filepath.Join(s.Bin, "coredns"), "-conf", path)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := l.Go("server", func() error {
			_, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(new(dns.Msg).SetQuestion(Zone+".", dns.TypeSOA), net.JoinHostPort(ip.String(), "53"))
			return err
		})
		if err == nil {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("the server did not start: %v\n%s", err, p.Out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Client is one bin/btmm-client in a host namespace.
type Client struct {
	*Proc
	Host, NS, Socket string
}

// StartClient runs bin/btmm-client run for host (a host label: desktop,
// laptop) in namespace ns, with extra arguments after "run".
func (s *System) StartClient(ns, host string, extra ...string) (*Client, error) {
	return s.StartClientBinary(filepath.Join(s.Bin, "btmm-client"), ns, host, extra...)
}

// StartClientBinary is StartClient with another btmm-client binary (an
// older build, for a benchmark's baseline), on the same state directory.
func (s *System) StartClientBinary(binary, ns, host string, extra ...string) (*Client, error) {
	state := filepath.Join(s.Dir, host)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	c := &Client{Host: host, NS: ns, Socket: filepath.Join(state, "status.sock")}
	conf := fmt.Sprintf("zone = %q\nuser = %q\nhost = %q\nkey = %q\nstate_dir = %q\nserver = \"%s:53\"\ntls_ca = %q\nstatus_socket = %q\n",
		Zone, User, host, filepath.Join(s.Dir, "users.keys"), state, s.Lab.Addr("server"), filepath.Join(s.Dir, "cert.pem"), c.Socket)
	path := filepath.Join(state, "client.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if s.Enroll {
		if err := s.enroll(binary, path); err != nil {
			return nil, err
		}
	}
	p, err := s.Start(ns, binary, append([]string{"run", "--config", path}, extra...)...)
	if err != nil {
		return nil, err
	}
	c.Proc = p
	return c, nil
}

// enroll pins the user's signing key on the host whose configuration is
// at config, making the key (s.Dir/user.key, as btmm-client keygen
// --user-key writes it) for the first host.
func (s *System) enroll(binary, config string) error {
	key := filepath.Join(s.Dir, "user.key")
	if _, err := os.Stat(key); err != nil {
		out, err := exec.Command(binary, "keygen", "--user", User, "--zone", Zone, "--user-key", key).CombinedOutput()
		if err != nil {
			return fmt.Errorf("btmm-client keygen --user-key: %v\n%s", err, out)
		}
	}
	if out, err := exec.Command(binary, "enroll", "--config", config, "--user-key", key).CombinedOutput(); err != nil {
		return fmt.Errorf("btmm-client enroll: %v\n%s", err, out)
	}
	return nil
}

// WaitStatus polls the client's status until ok, or fails after within.
func (c *Client) WaitStatus(ctx context.Context, within time.Duration, ok func(daemon.Status) bool) (daemon.Status, error) {
	deadline := time.Now().Add(within)
	for {
		st, err := daemon.Fetch(c.Socket)
		if err == nil && ok(st) {
			return st, nil
		}
		select {
		case <-c.done:
			return st, errors.New("btmm-client exited:\n" + c.Out.String())
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("not within %v", within)
		}
	}
}

// HasPeer reports whether st lists host (a label) as a peer, at the public
// address addr if that is not empty.
func HasPeer(st daemon.Status, host, addr string) bool {
	for _, p := range st.Peers {
		if strings.HasPrefix(p.Host, host+".") && (addr == "" || p.Public.Addr().String() == addr) {
			return true
		}
	}
	return false
}

// PeerULA is the tunnel address st lists for the peer host (a label), or
// the zero Addr while it is not known: a peer's records come in one by
// one, so a peer may be listed a moment before its address.
func PeerULA(st daemon.Status, host string) netip.Addr {
	for _, p := range st.Peers {
		if strings.HasPrefix(p.Host, host+".") {
			return p.ULA
		}
	}
	return netip.Addr{}
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
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ns1." + Zone},
		DNSNames: []string{"ns1." + Zone}, IPAddresses: []net.IP{ip.AsSlice()},
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
