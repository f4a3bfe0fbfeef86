package etcdtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func put(t *testing.T, cli *clientv3.Client, key, value string, limit time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	_, err := cli.Put(ctx, key, value)
	return err
}

func get(t *testing.T, cli *clientv3.Client, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(r.Kvs) != 1 {
		return ""
	}
	return string(r.Kvs[0].Value)
}

// putEventually retries a Put until it succeeds, as a store would while a
// cluster regains its quorum.
func putEventually(t *testing.T, cli *clientv3.Client, key, value string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := put(t, cli, key, value, time.Second)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("put %s: no success within %v: %v", key, limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded
}

// TestCluster: a 3-member cluster replicates; it survives the loss of its
// leader, stops taking writes without a quorum and takes them again once
// a member is back.
func TestCluster(t *testing.T) {
	c := Start(t, 3)
	if n := len(c.Endpoints()); n != 3 {
		t.Fatalf("%d endpoints, want 3", n)
	}

	// Written through one member, read (linearizably) through another.
	if err := put(t, c.MemberClient(t, 0), "k", "v0", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if v := get(t, c.MemberClient(t, 2), "k"); v != "v0" {
		t.Fatalf("member 2 reads %q, want v0", v)
	}

	// The leader crashes: another member is elected, writes go on.
	cli := c.Client(t)
	old := c.Leader(t)
	c.Stop(old)
	began := time.Now()
	leader := c.Leader(t)
	if leader == old {
		t.Fatalf("leader is still the stopped member %d", old)
	}
	t.Logf("member %d stopped; member %d leads after %v", old, leader, time.Since(began).Round(time.Millisecond))
	if err := put(t, cli, "k", "v1", 5*time.Second); err != nil {
		t.Fatalf("put with a new leader: %v", err)
	}

	// Two of three are gone: no quorum, writes time out.
	// A Put sent just as the member dies may fail at once (Unavailable,
	// on the connection to it) instead: the next goes to the live one.
	c.Stop(leader)
	for try := 1; ; try++ {
		err := put(t, cli, "k", "v2", time.Second)
		if err == nil {
			t.Fatal("put succeeded with one member of three")
		}
		if isTimeout(err) {
			break
		}
		if try == 3 {
			t.Fatalf("put with one member of three: %v, want a timeout", err)
		}
		t.Logf("put with one member of three, try %d: %v", try, err)
	}

	// One is back: a quorum again, writes succeed, and the restarted
	// member kept its data.
	c.Restart(old)
	putEventually(t, cli, "k", "v3", 15*time.Second)
	if v := get(t, c.MemberClient(t, old), "k"); v != "v3" {
		t.Fatalf("restarted member %d reads %q, want v3", old, v)
	}
	t.Logf("member %d leads again", c.Leader(t))
}

// TestCleanup: no member outlives its test, and the harness wrote nothing.
func TestCleanup(t *testing.T) {
	var pids []int
	t.Run("cluster", func(t *testing.T) {
		c := Start(t, 3)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := c.Client(t).Get(ctx, "", clientv3.WithFromKey())
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) != 0 || r.Header.Revision != 1 {
			t.Errorf("fresh cluster: %d keys at revision %d, want none at 1", len(r.Kvs), r.Header.Revision)
		}
		c.Stop(1)
		c.Restart(1)
		for _, m := range c.members {
			pids = append(pids, m.cmd.Process.Pid)
		}
	})
	for _, pid := range pids {
		// Waited for, so the process is gone, not a zombie.
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("member process %d is still there after the test: kill 0: %v", pid, err)
		}
	}
}

// TestTLS: a TLS cluster serves https client URLs to a client with the
// test CA's client certificate, and refuses one that trusts the CA but
// has no certificate of its own.
func TestTLS(t *testing.T) {
	c := StartWith(t, 3, Options{TLS: true})
	for _, ep := range c.Endpoints() {
		if !strings.HasPrefix(ep, "https://") {
			t.Fatalf("endpoint %s, want https", ep)
		}
	}
	for _, f := range []string{c.CAFile(), c.ClientCertFile(), c.ClientKeyFile()} {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := put(t, c.MemberClient(t, 0), "k", "v", 5*time.Second); err != nil {
		t.Fatalf("put with the client certificate: %v", err)
	}
	if v := get(t, c.MemberClient(t, 2), "k"); v != "v" {
		t.Fatalf("member 2 reads %q, want v", v)
	}

	pool := x509.NewCertPool()
	ca, err := os.ReadFile(c.CAFile())
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("reading %s: %v", c.CAFile(), err)
	}
	anon, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints(),
		DialTimeout: 2 * time.Second,
		TLS:         &tls.Config{RootCAs: pool},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	// The client waits for a connection that the members keep refusing,
	// so all it can say is that its deadline passed...
	err = put(t, anon, "k", "anonymous", 2*time.Second)
	if err == nil {
		t.Fatal("put without a client certificate succeeded")
	}
	if !isTimeout(err) {
		t.Errorf("put without a client certificate: %v, want a timeout", err)
	}
	// ...the member says why, in the TLS alert it sends once it has seen
	// the client's (empty) certificate.
	u, err := url.Parse(c.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: pool})
	if err == nil {
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("TLS without a client certificate: %v, want a certificate required alert", err)
	}
	if v := get(t, c.Client(t), "k"); v != "v" {
		t.Fatalf("after the refused put, k is %q, want v", v)
	}
}
