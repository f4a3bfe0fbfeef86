// Package etcdtest starts real etcd clusters for the tests of the etcd zone
// store: members of the built bin/etcd (`make build`, or `make etcd` alone)
// as separate processes on free loopback ports, each with its data in a
// directory of the test's own, stopped and removed however the test ends.
//
// It is a package of its own, not a _test.go file, so that the tests of
// every package that uses the store (the store itself, the plugins, the
// end-to-end tests) can share it; only tests import it. Members are
// processes rather than an embedded server so that a test can kill one
// with SIGKILL as a crash would, restart it on the same data, and so that
// no etcd server code links into any binary of the project.
//
// The members run with etcd's defaults except where a test needs speed:
// short heartbeat and election timeouts, so that a new leader is elected
// within about a second of a kill; no fsync (a killed process loses
// nothing that fsync would have kept; only a power loss would); a backend
// quota of 256 MiB; logs at level error, shown when the test fails. Limits
// that the store must live with stay at etcd's defaults: at most 128
// operations in a transaction (--max-txn-ops) and requests of at most
// 1.5 MiB (--max-request-bytes), as users run it.
//
// Client URLs are plain http unless Options.TLS asks for https with
// client certificates, signed by a CA the harness makes for the test.
package etcdtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/openbtmm/btmm/test/coredns"
	"go.uber.org/zap"
)

// Timing of the members and of the harness.
const (
	heartbeatMs = 50
	electionMs  = 500 // 10 heartbeats, as etcd's defaults (100 and 1000)
	quotaBytes  = 256 << 20
	// startLimit bounds how long members take to start (or restart) and
	// agree on a leader.
	startLimit = 30 * time.Second
	// leaderLimit bounds how long Leader waits for an election.
	leaderLimit = 10 * time.Second
	probeLimit  = 250 * time.Millisecond // one Status or Get while waiting
)

// Binary returns the path of bin/etcd, built by `make build` (or `make
// etcd` alone). The test fails, rather than skips, when it is missing: CI
// builds it first.
func Binary(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	// This file is plugin/pkg/store/etcdstore/etcdtest/etcdtest.go.
	bin := filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "..", "bin", "etcd")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run `make etcd` (or `make build`, which builds it) first", filepath.Clean(bin))
	}
	return filepath.Clean(bin)
}

// Cluster is a running etcd cluster of bin/etcd processes.
type Cluster struct {
	t       testing.TB
	bin     string
	members []*member
	cli     *clientv3.Client // the harness's own, on every endpoint
	pki     *pki             // nil: plain http client URLs
}

type member struct {
	name, dataDir      string
	clientURL, peerURL string
	args               []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}   // closed when cmd has exited
	output *coredns.Output // what every run of the member printed
}

// Start starts a cluster of members etcd members on 127.0.0.1 and waits
// until every member answers and the cluster has a leader and serves
// linearizable reads. The harness writes nothing: the keyspace is empty
// at revision 1. Everything is killed and removed when the test ends; if
// it failed, the members' logs are shown.
func Start(t testing.TB, members int) *Cluster {
	t.Helper()
	return StartWith(t, members, Options{})
}

// Options change how the members run.
type Options struct {
	// Fsync makes the members sync their log as etcd does by default, for
	// benchmarks that compare with a store that syncs; tests leave it off
	// for speed (a killed process loses nothing either way).
	Fsync bool
	// TLS makes the members serve their client URLs over https, with a
	// server certificate for 127.0.0.1, and refuse clients without a
	// certificate; CAFile, ClientCertFile and ClientKeyFile are the files
	// a client needs, and the harness's clients use them. A test CA signs
	// both certificates. Peers still talk plain http: what is tested is
	// the store's client, not etcd's replication.
	TLS bool
}

// StartWith is Start with options.
func StartWith(t testing.TB, members int, o Options) *Cluster {
	t.Helper()
	if members < 1 {
		t.Fatalf("etcdtest.Start: %d members", members)
	}
	c := &Cluster{t: t, bin: Binary(t)}
	scheme := "http"
	if o.TLS {
		c.pki = newPKI(t)
		scheme = "https"
	}
	var initial []string
	for i := range members {
		m := &member{
			name:      fmt.Sprintf("m%d", i),
			dataDir:   filepath.Join(t.TempDir(), "data"), // etcd makes it, mode 0700
			clientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, freePort(t)),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
			output:    new(coredns.Output),
		}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	// Registered after the first t.TempDir, so it runs before the
	// directories are removed: no member may still be writing then.
	t.Cleanup(c.cleanup)
	began := time.Now()
	// Unique, so that members of two tests' clusters never join.
	token := fmt.Sprintf("etcdtest-%d-%d", os.Getpid(), time.Now().UnixNano())
	for i, m := range c.members {
		m.args = []string{
			"--name", m.name,
			"--data-dir", m.dataDir,
			"--listen-client-urls", m.clientURL,
			"--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL,
			"--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--heartbeat-interval", fmt.Sprint(heartbeatMs),
			"--election-timeout", fmt.Sprint(electionMs),
			"--quota-backend-bytes", fmt.Sprint(quotaBytes),
			"--log-level", "error",
			// --max-txn-ops and --max-request-bytes: etcd's defaults (128
			// and 1.5 MiB), on purpose.
		}
		if !o.Fsync {
			m.args = append(m.args, "--unsafe-no-fsync")
		}
		if c.pki != nil {
			m.args = append(m.args,
				"--cert-file", c.pki.serverCert,
				"--key-file", c.pki.serverKey,
				"--client-cert-auth",
				"--trusted-ca-file", c.pki.caFile)
		}
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	// Connecting before the members listen would cost the client a second
	// of gRPC's reconnect backoff.
	for i := range c.members {
		c.waitListening(i, began.Add(startLimit))
	}
	var err error
	c.cli, err = clientv3.New(c.config(c.Endpoints()))
	if err != nil {
		t.Fatal(err)
	}
	c.waitReady(began.Add(startLimit))
	t.Logf("etcdtest: %d-member etcd cluster ready in %v", members, time.Since(began).Round(time.Millisecond))
	return c
}

// Endpoints returns the members' client URLs, member i's at index i.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.clientURL
	}
	return eps
}

// Client returns a client on every member's endpoint, closed when t ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return c.client(t, c.Endpoints())
}

// MemberClient returns a client on member i's endpoint only, closed when t
// ends: to write through one member and read through another.
func (c *Cluster) MemberClient(t testing.TB, i int) *clientv3.Client {
	t.Helper()
	return c.client(t, []string{c.members[i].clientURL})
}

func (c *Cluster) client(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(c.config(endpoints))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (c *Cluster) config(endpoints []string) clientv3.Config {
	var tlsConfig *tls.Config
	if c.pki != nil {
		tlsConfig = c.pki.clientTLS(c.t)
	}
	return clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsConfig,
		DialTimeout: 2 * time.Second,
		// The client logs every retry against a stopped member; tests
		// see the errors that matter in what their calls return.
		Logger: zap.NewNop(),
	}
}

// Stop kills member i with SIGKILL, as a crash would, and waits for it to
// exit. Its data stays for Restart.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	if !c.members[i].kill() {
		c.t.Fatalf("etcdtest: member %d is not running", i)
	}
}

// Restart starts member i again, on the same data directory and ports,
// and waits until it answers on its endpoint. It does not wait for a
// leader: without a quorum there is none.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.members[i].running() {
		c.t.Fatalf("etcdtest: member %d is running", i)
	}
	if err := c.start(i); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(startLimit)
	c.waitListening(i, deadline)
	for {
		_, err := c.status(i)
		if err == nil {
			return
		}
		c.checkAlive(i)
		if time.Now().After(deadline) {
			c.t.Fatalf("etcdtest: member %d did not answer within %v after restart: %v", i, startLimit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Leader returns the index of the member that is the leader, as the
// maintenance Status API of the running members tells it, waiting for an
// election that is under way.
func (c *Cluster) Leader(t testing.TB) int {
	t.Helper()
	deadline := time.Now().Add(leaderLimit)
	for {
		if i, ok := c.leader(); ok {
			return i
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcdtest: no leader within %v", leaderLimit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leader returns the running member that says it is the leader, if the
// other members that answer agree.
func (c *Cluster) leader() (int, bool) {
	leader, agree := -1, true
	var leaderID uint64
	for i, m := range c.members {
		if !m.running() {
			continue
		}
		st, err := c.status(i)
		if err != nil || st.Leader == 0 {
			continue
		}
		if leaderID != 0 && st.Leader != leaderID {
			agree = false
		}
		leaderID = st.Leader
		if st.Leader == st.Header.MemberId {
			leader = i
		}
	}
	return leader, leader >= 0 && agree
}

func (c *Cluster) status(i int) (*clientv3.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), probeLimit)
	defer cancel()
	return c.cli.Status(ctx, c.members[i].clientURL)
}

// waitReady waits until every member answers and knows a leader, and a
// linearizable read (which needs the leader and a quorum) succeeds.
func (c *Cluster) waitReady(deadline time.Time) {
	c.t.Helper()
	for {
		err := c.ready()
		if err == nil {
			return
		}
		for i := range c.members {
			c.checkAlive(i)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("etcdtest: cluster not ready within %v: %v", startLimit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) ready() error {
	for i := range c.members {
		st, err := c.status(i)
		if err != nil {
			return fmt.Errorf("member %d: %w", i, err)
		}
		if st.Leader == 0 {
			return fmt.Errorf("member %d: no leader", i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeLimit)
	defer cancel()
	_, err := c.cli.Get(ctx, "etcdtest-ready")
	return err
}

// waitListening waits until member i accepts connections on its client
// URL.
func (c *Cluster) waitListening(i int, deadline time.Time) {
	c.t.Helper()
	u, err := url.Parse(c.members[i].clientURL)
	if err != nil {
		c.t.Fatal(err)
	}
	addr := u.Host
	for {
		conn, err := net.DialTimeout("tcp", addr, probeLimit)
		if err == nil {
			conn.Close()
			return
		}
		c.checkAlive(i)
		if time.Now().After(deadline) {
			c.t.Fatalf("etcdtest: member %d does not listen on %s within %v: %v", i, addr, startLimit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkAlive fails the test, with the member's log, if member i exited
// while it was meant to run (a port taken since it was found free, say).
func (c *Cluster) checkAlive(i int) {
	c.t.Helper()
	m := c.members[i]
	m.mu.Lock()
	done := m.done
	m.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
		c.t.Fatalf("etcdtest: member %d exited:\n%s", i, m.output)
	default:
	}
}

func (c *Cluster) start(i int) error {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd := exec.Command(c.bin, m.args...)
	cmd.Env = environ()
	fmt.Fprintf(m.output, "--- etcdtest: member %d (%s) starts: %s\n", i, m.name, strings.Join(m.args, " "))
	cmd.Stdout = m.output
	cmd.Stderr = m.output
	// A process group of its own, killed as a whole; and killed too if
	// the test binary dies before its cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcdtest: starting member %d: %w", i, err)
	}
	done := make(chan struct{})
	m.cmd, m.done = cmd, done
	go func() { cmd.Wait(); close(done) }()
	return nil
}

// environ is the test's environment without ETCD_* variables, which etcd
// would take as flags.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") && !strings.HasPrefix(kv, "ETCDCTL_") {
			env = append(env, kv)
		}
	}
	return env
}

// kill kills the member's process group with SIGKILL and waits for the
// process; it reports whether the member was running.
func (m *member) kill() bool {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return false
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	return true
}

func (m *member) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

func (c *Cluster) cleanup() {
	if c.cli != nil {
		c.cli.Close()
	}
	for _, m := range c.members {
		m.kill()
	}
	if c.t.Failed() {
		for i, m := range c.members {
			c.t.Logf("etcdtest: log of member %d:\n%s", i, m.output)
		}
	}
}

// freePort returns a TCP port that is free on 127.0.0.1 now. etcd binds it
// a moment later, so it is drawn below the kernel's ephemeral range
// (32768 and up on Linux): a port the kernel hands out for ":0" could be
// handed out again meanwhile, as the source port of an outgoing
// connection (one member's to another), and the member would not start.
// A port drawn is never drawn again in the process: the members of a
// cluster bind theirs one after the other, so a port free now may be
// another member's, drawn a moment ago and not bound yet.
func freePort(t testing.TB) int {
	t.Helper()
	drawn.Lock()
	defer drawn.Unlock()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		if drawn.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // in use
		}
		l.Close()
		drawn.ports[port] = true
		return port
	}
	t.Fatal("etcdtest: no free port below the ephemeral range after 100 tries")
	return 0
}

var drawn = struct {
	sync.Mutex
	ports map[int]bool
}{ports: make(map[int]bool)}
