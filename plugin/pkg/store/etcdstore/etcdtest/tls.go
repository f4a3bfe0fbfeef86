package etcdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pki is the test CA of a TLS cluster and what it signed, as PEM files
// in a directory of the test's own: the paths a Corefile's
// `tls CERT KEY CA` names.
type pki struct {
	caFile                string
	serverCert, serverKey string
	clientCert, clientKey string
	pool                  *x509.CertPool // the CA, for the harness's clients
}

// newPKI generates a CA (ECDSA P-256), a server certificate for 127.0.0.1
// and a client certificate, all signed by the CA, valid from an hour ago
// (clocks of test machines drift) for a day.
func newPKI(t testing.TB) *pki {
	t.Helper()
	dir := t.TempDir()
	p := &pki{
		caFile:     filepath.Join(dir, "ca.pem"),
		serverCert: filepath.Join(dir, "server.pem"),
		serverKey:  filepath.Join(dir, "server-key.pem"),
		clientCert: filepath.Join(dir, "client.pem"),
		clientKey:  filepath.Join(dir, "client-key.pem"),
	}
	now := time.Now()
	template := func(cn string) *x509.Certificate {
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
		if err != nil {
			t.Fatal(err)
		}
		return &x509.Certificate{
			SerialNumber: serial,
			Subject:      pkix.Name{CommonName: cn, Organization: []string{"etcdtest"}},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
		}
	}

	caTmpl := template("etcdtest CA")
	caTmpl.IsCA = true
	caTmpl.BasicConstraintsValid = true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	caKey := newKey(t)
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)

	issue := func(tmpl *x509.Certificate, certFile, keyFile string) {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		key := newKey(t)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, certFile, "CERTIFICATE", der)
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, keyFile, "PRIVATE KEY", kder)
	}
	server := template("127.0.0.1")
	server.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	// Client auth too: etcd's HTTP gateway dials the member's own gRPC
	// server with this certificate, which --client-cert-auth then checks.
	server.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	issue(server, p.serverCert, p.serverKey)
	client := template("etcdtest client")
	client.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	issue(client, p.clientCert, p.clientKey)
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writePEM(t testing.TB, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// clientTLS is the configuration of the harness's clients: the CA's
// server certificates only, and the client certificate.
func (p *pki) clientTLS(t testing.TB) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// CAFile returns the path of the test CA's certificate (PEM), which signed
// the members' server certificate and the client certificate; "" if the
// cluster does not use TLS.
func (c *Cluster) CAFile() string {
	if c.pki == nil {
		return ""
	}
	return c.pki.caFile
}

// ClientCertFile returns the path of the client certificate (PEM) that the
// members accept; "" if the cluster does not use TLS.
func (c *Cluster) ClientCertFile() string {
	if c.pki == nil {
		return ""
	}
	return c.pki.clientCert
}

// ClientKeyFile returns the path of the client certificate's private key
// (PEM, PKCS #8); "" if the cluster does not use TLS.
func (c *Cluster) ClientKeyFile() string {
	if c.pki == nil {
		return ""
	}
	return c.pki.clientKey
}
