// Package coredns starts the built bin/coredns for tests: in a directory of
// the test's own, on free loopback ports, and stops it however the test
// ends.
package coredns

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Binary returns the path of bin/coredns, built by `make build`.
func Binary(t testing.TB) string { t.Helper(); return Built(t, "coredns") }

// Built returns the path of bin/NAME, built by `make build`.
func Built(t testing.TB, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(filepath.Dir(file), "..", "..", "bin", name)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run `make build` (or `make test`, which builds it) first", bin)
	}
	return bin
}

// Server is one bin/coredns process.
type Server struct {
	t        testing.TB
	Dir      string // the working directory, where relative paths resolve
	Corefile string // its path
	// Ports found free for the test; the Corefile may use them as
	// {{PORT}}, {{TLSPORT}}, {{LLQPORT}}, {{LLQTLSPORT}}, {{UPDATEPORT}}
	// (tsig-update's UDP and TCP listeners) and {{UPDATETLSPORT}}.
	Port, TLSPort, LLQPort, LLQTLSPort, UpdatePort, UpdateTLSPort int

	// Host is the address the server answers on (default 127.0.0.1).
	Host string
	// Command makes the process's command (default exec.Command); a lab
	// test runs it in a network namespace with it.
	Command func(name string, args ...string) *exec.Cmd
	// Probe runs the start-up check (default: directly); a lab test runs
	// it inside the server's namespace.
	Probe func(check func() error) error

	mu     sync.Mutex
	cmd    *exec.Cmd
	output *Output
	done   chan struct{}
}

// FreePort returns a port that is free on 127.0.0.1 for both UDP and TCP.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// New writes corefile into dir (with {{PORT}} and {{TLSPORT}} replaced) and
// returns a server that is not started yet.
func New(t testing.TB, dir, corefile string) *Server {
	t.Helper()
	s := &Server{t: t, Dir: dir, Port: FreePort(t), TLSPort: FreePort(t), LLQPort: FreePort(t), LLQTLSPort: FreePort(t),
		UpdatePort: FreePort(t), UpdateTLSPort: FreePort(t)}
	corefile = strings.NewReplacer(
		"{{PORT}}", fmt.Sprint(s.Port), "{{TLSPORT}}", fmt.Sprint(s.TLSPort),
		"{{LLQPORT}}", fmt.Sprint(s.LLQPort), "{{LLQTLSPORT}}", fmt.Sprint(s.LLQTLSPort),
		"{{UPDATEPORT}}", fmt.Sprint(s.UpdatePort), "{{UPDATETLSPORT}}", fmt.Sprint(s.UpdateTLSPort),
	).Replace(corefile)
	s.Corefile = filepath.Join(dir, "Corefile")
	if err := os.WriteFile(s.Corefile, []byte(corefile), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

func (s *Server) host() string {
	if s.Host == "" {
		return "127.0.0.1"
	}
	return s.Host
}

// Addr is the plain DNS address, host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.host(), fmt.Sprint(s.Port)) }

// TLSAddr is the DNS-over-TLS address, host:port.
func (s *Server) TLSAddr() string { return fmt.Sprintf("127.0.0.1:%d", s.TLSPort) }

// UpdateAddr is tsig-update's UDP and TCP address, host:port.
func (s *Server) UpdateAddr() string { return net.JoinHostPort(s.host(), fmt.Sprint(s.UpdatePort)) }

// UpdateTLSAddr is tsig-update's TLS address, host:port.
func (s *Server) UpdateTLSAddr() string { return fmt.Sprintf("127.0.0.1:%d", s.UpdateTLSPort) }

// LLQAddr is the LLQ listeners' address (UDP and TCP), host:port.
func (s *Server) LLQAddr() string { return fmt.Sprintf("127.0.0.1:%d", s.LLQPort) }

// LLQTLSAddr is the LLQ listener's TLS address, host:port.
func (s *Server) LLQTLSAddr() string { return fmt.Sprintf("127.0.0.1:%d", s.LLQTLSPort) }

// Start starts the process and waits until it answers an SOA query for
// zone on Addr.
func (s *Server) Start(zone string) { s.t.Helper(); s.StartTimeout(zone, 20*time.Second) }

// StartTimeout is Start with a limit on how long starting may take.
func (s *Server) StartTimeout(zone string, limit time.Duration) {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(limit)
	probe := s.Probe
	if probe == nil {
		probe = func(check func() error) error { return check() }
	}
	for {
		err := probe(func() error {
			m := new(dns.Msg).SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
			c := &dns.Client{Timeout: 200 * time.Millisecond}
			r, _, err := c.Exchange(m, s.Addr())
			if err == nil && r.Rcode != dns.RcodeSuccess {
				err = fmt.Errorf("SOA: %s", dns.RcodeToString[r.Rcode])
			}
			return err
		})
		if err == nil {
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("coredns exited while starting:\n%s", s.Output())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("coredns did not answer within %v:\n%s", limit, s.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StartFails starts the process and returns its output once it exits,
// failing the test if it is still running after 10 seconds.
func (s *Server) StartFails() string {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-s.done:
		return s.Output()
	case <-time.After(10 * time.Second):
		s.t.Fatalf("coredns is still running, want it to refuse to start:\n%s", s.Output())
		return ""
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.output = new(Output)
	command := s.Command
	if command == nil {
		command = exec.Command
	}
	cmd := command(Binary(s.t), "-conf", s.Corefile)
	cmd.Dir = s.Dir
	cmd.Stdout = s.output
	cmd.Stderr = cmd.Stdout
	// Its own process group, so that nothing it starts outlives the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	done := make(chan struct{})
	s.done = done
	go func() { cmd.Wait(); close(done) }()
	return nil
}

// Pid returns the process's id, 0 before it started.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Output returns what the process printed so far.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.output == nil {
		return ""
	}
	return s.output.String()
}

// Signal sends sig to the process.
func (s *Server) Signal(sig os.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatal("coredns is not running")
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// Kill kills the process with SIGKILL, as a crash would, and waits for it.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Stop asks the process to end (SIGTERM) and waits up to 10 seconds.
func (s *Server) Stop() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return errors.New("coredns did not stop on SIGTERM within 10s")
	}
}

// Output collects what a process prints: its Write and String may be
// called from different goroutines (os/exec copies from a pipe in one).
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// NeedTool returns the path of a Debian tool a test needs. Where it is
// missing the test fails under CI (which installs it) and is skipped, with
// the package to install, elsewhere.
func NeedTool(t testing.TB, name, pkg string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := fmt.Sprintf("%s is not installed (Debian package %s)", name, pkg)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
