package btmm

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestEtcdUnreachable: what open adds to the client's bare "context
// deadline exceeded" says why each endpoint failed: nothing listens, or
// the member refused a TLS client without a certificate (with a hint at
// the Corefile), or nothing at all when the connection is taken.
func TestEtcdUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()

	// A TLS server that wants a client certificate, as etcd with
	// --client-cert-auth.
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: x509.NewCertPool()}
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	caOnly := &tls.Config{RootCAs: roots}

	for _, c := range []struct {
		endpoints []string
		tls       *tls.Config
		want      []string // "" wants nothing
	}{
		{[]string{closed}, nil, []string{closed + ": ", "connection refused"}},
		{[]string{srv.URL, closed}, caOnly, []string{
			srv.URL + ": remote error: tls: certificate required, and the etcd block's tls names no client certificate",
			"; " + closed + ": ", "connection refused"}},
		{[]string{srv.URL}, nil, []string{"certificate signed by unknown authority"}},
		{[]string{strings.Replace(srv.URL, "https", "http", 1)}, caOnly, []string{""}},
	} {
		e := &etcdPlace{endpoints: c.endpoints, tls: c.tls}
		got := e.unreachable()
		for _, w := range c.want {
			if (w == "" && got != "") || !strings.Contains(got, w) {
				t.Errorf("%v: %q, want %q in it", c.endpoints, got, w)
			}
		}
	}
}
