package btmm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/coredns/caddy"
	ctls "github.com/coredns/coredns/plugin/pkg/tls"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/openbtmm/btmm/plugin/pkg/corefile"
	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/etcdstore"
)

// etcdPlace is the zone on an etcd cluster: every instance configured
// with the same endpoints' cluster and prefix serves the same zone.
type etcdPlace struct {
	endpoints []string
	prefix    string
	tls       *tls.Config // nil: plain HTTP endpoints
}

func (e *etcdPlace) String() string {
	return "etcd " + strings.Join(e.endpoints, ",") + " " + e.prefix
}

// parseEtcd reads the etcd property's endpoints and its block.
func parseEtcd(c *caddy.Controller, endpoints []string, zone string, inRoot func(string) string) (*etcdPlace, error) {
	if len(endpoints) == 0 {
		return nil, c.Err("etcd needs at least one endpoint, such as https://10.0.0.1:2379")
	}
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, c.Errf("etcd endpoint %q is not an http:// or https:// URL", ep)
		}
	}
	e := &etcdPlace{endpoints: endpoints, prefix: "/btmm/" + strings.TrimSuffix(zone, ".")}
	err := corefile.Nested(c, func(prop string, args []string) error {
		switch prop {
		case "prefix":
			if len(args) != 1 || !strings.HasPrefix(args[0], "/") {
				return c.Err("prefix takes one key path that starts with /")
			}
			e.prefix = strings.TrimSuffix(args[0], "/")
		case "tls":
			if len(args) == 0 || len(args) > 3 {
				return c.ArgErr()
			}
			for i := range args {
				args[i] = inRoot(args[i])
			}
			// CoreDNS's own etcd plugin reads the same: CA alone, or
			// client certificate, key and CA. The number of arguments
			// says which, so they are passed on as they are.
			var err error
			e.tls, err = ctls.NewTLSConfigFromArgs(args...)
			if err != nil {
				return c.Errf("etcd tls: %v", err)
			}
		default:
			return corefile.ErrUnknown
		}
		return nil
	})
	return e, err
}

// open connects to the cluster and opens the zone under the prefix; the
// store closes the client when it closes.
func (e *etcdPlace) open(zone string) (store.Store, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   e.endpoints,
		DialTimeout: 5 * time.Second,
		TLS:         e.tls,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(e.endpoints, ","), err)
	}
	s, err := etcdstore.Open(cli, e.prefix+"/", zone, etcdstore.Options{Logf: log.Infof})
	if err != nil {
		cli.Close()
		// The client waits for a connection until its deadline and then
		// says no more than that; one connection of our own finds why.
		if errors.Is(err, context.DeadlineExceeded) {
			if why := e.unreachable(); why != "" {
				err = fmt.Errorf("%w (%s)", err, why)
			}
		}
		return nil, err
	}
	return &etcdZone{Store: s, cli: cli}, nil
}

// unreachable connects to each endpoint once, with a TLS handshake for
// https, and tells what failed, naming each reason once with the
// endpoints that gave it; "" if every endpoint took the connection.
func (e *etcdPlace) unreachable() string {
	var reasons []string
	failed := map[string][]string{} // reason: endpoints
	for _, ep := range e.endpoints {
		err := e.reach(ep)
		if err == nil {
			continue
		}
		why := err.Error()
		// crypto/tls has no type for an alert from the peer, only its
		// text; a member that complains of the certificate of a client
		// that showed none most likely wants one.
		if strings.HasPrefix(why, "remote error: tls:") && strings.Contains(why, "certificate") &&
			e.tls != nil && len(e.tls.Certificates) == 0 {
			why += ", and the etcd block's tls names no client certificate: tls CERT KEY CA"
		}
		if failed[why] == nil {
			reasons = append(reasons, why)
		}
		failed[why] = append(failed[why], ep)
	}
	var out []string
	for _, why := range reasons {
		out = append(out, strings.Join(failed[why], ", ")+": "+why)
	}
	return strings.Join(out, "; ")
}

// reach makes one connection to endpoint as the client would, and
// returns why it failed, if it did.
func (e *etcdPlace) reach(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if u.Scheme != "https" {
		return nil
	}
	cfg := &tls.Config{}
	if e.tls != nil {
		cfg = e.tls.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	tc := tls.Client(conn, cfg)
	tc.SetDeadline(time.Now().Add(time.Second))
	if err := tc.Handshake(); err != nil {
		return err
	}
	// With TLS 1.3 the member checks the client's certificate after the
	// client has finished its handshake: a refusal is an alert that the
	// first read returns. A member that accepts the client waits for it
	// to speak, so the read ends at the deadline instead.
	_, err = tc.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return nil
	}
	return err
}

// etcdZone is the etcd store with the client it owns.
type etcdZone struct {
	*etcdstore.Store
	cli *clientv3.Client
}

func (z *etcdZone) Close() error {
	err := z.Store.Close()
	if cerr := z.cli.Close(); err == nil {
		err = cerr
	}
	return err
}
