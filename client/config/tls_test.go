package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const serverName = "dns.example.test"

// selfSigned makes a self-signed certificate for serverName that can also
// act as its own CA.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: serverName},
		DNSNames:              []string{serverName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// handshake runs a TLS handshake between conf and a server with cert over
// loopback TCP and returns the client's error. (Not net.Pipe: it has no
// buffer, so a client that refuses the server's flight blocks sending its
// alert while the server blocks sending the rest of the flight.)
func tlsHandshake(t *testing.T, conf *tls.Config, cert tls.Certificate) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		server := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		server.Handshake() // fails when the client refuses; the client's error is the one that matters
		server.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	client := tls.Client(c, conf)
	err = client.Handshake()
	client.Close()
	<-done
	return err
}

func TestTLSPin(t *testing.T) {
	good, other := selfSigned(t), selfSigned(t)
	c := valid()
	c.TLSPin = Pin(good.Leaf)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	conf, err := c.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !conf.InsecureSkipVerify || conf.VerifyPeerCertificate == nil || conf.MinVersion != tls.VersionTLS12 {
		t.Fatalf("pinned config: %+v", conf)
	}
	// The pinned key passes without a server name or a trusted chain.
	if err := tlsHandshake(t, conf, good); err != nil {
		t.Errorf("the pinned certificate was refused: %v", err)
	}
	// Another key is refused, and the error gives its pin.
	err = tlsHandshake(t, conf, other)
	if err == nil || !strings.Contains(err.Error(), Pin(other.Leaf)) {
		t.Errorf("another certificate: %v", err)
	}
	// Each handshake is checked: the config is not satisfied once for all.
	if err := tlsHandshake(t, conf, good); err != nil {
		t.Errorf("the pinned certificate, again: %v", err)
	}
}

func TestPinIsSPKIHash(t *testing.T) {
	cert := selfSigned(t)
	der, err := x509.MarshalPKIXPublicKey(cert.Leaf.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	if got, want := Pin(cert.Leaf), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		t.Errorf("Pin = %s, want %s", got, want)
	}
}

func TestTLSCA(t *testing.T) {
	good, other := selfSigned(t), selfSigned(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good.Certificate[0]}), 0o644)

	c := valid()
	c.TLSCA = ca
	conf, err := c.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if conf.InsecureSkipVerify || conf.RootCAs == nil {
		t.Fatalf("CA config: %+v", conf)
	}
	conf = conf.Clone()
	conf.ServerName = serverName // what the caller does with the SRV target
	if err := tlsHandshake(t, conf, good); err != nil {
		t.Errorf("certificate from the CA refused: %v", err)
	}
	if err := tlsHandshake(t, conf, other); err == nil {
		t.Error("certificate from another CA accepted")
	}
	wrongName := conf.Clone()
	wrongName.ServerName = "other.example.test"
	if err := tlsHandshake(t, wrongName, good); err == nil {
		t.Error("certificate for another name accepted")
	}

	// tls_server_name sets the name.
	c.TLSServerName = serverName
	named, err := c.TLSConfig()
	if err != nil || named.ServerName != serverName {
		t.Fatalf("ServerName %q, %v", named.ServerName, err)
	}
	if err := tlsHandshake(t, named, good); err != nil {
		t.Errorf("with tls_server_name: %v", err)
	}
}

func TestTLSSystemRoots(t *testing.T) {
	c := valid()
	c.TLSServerName = serverName
	conf, err := c.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if conf.InsecureSkipVerify || conf.RootCAs != nil || conf.VerifyPeerCertificate != nil {
		t.Fatalf("default config: %+v", conf)
	}
	if err := tlsHandshake(t, conf, selfSigned(t)); err == nil {
		t.Error("a self-signed certificate passed the system's roots")
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello\n"), 0o644)
	for _, tc := range []struct {
		name   string
		change func(*Config)
		field  string
	}{
		{"missing CA file", func(c *Config) { c.TLSCA = filepath.Join(dir, "missing.pem") }, "tls_ca"},
		{"CA file without PEM", func(c *Config) { c.TLSCA = notPEM }, "tls_ca"},
		{"bad pin", func(c *Config) { c.TLSPin = "not base64" }, "tls_pin"},
		{"pin and CA", func(c *Config) { c.TLSPin, c.TLSCA = Pin(&x509.Certificate{}), notPEM }, "tls_pin"},
		{"no TLS", func(c *Config) { c.Transport = "udp" }, "transport"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.change(c)
			conf, err := c.TLSConfig()
			if fe, ok := err.(*FieldError); !ok || fe.Field != tc.field {
				t.Errorf("TLSConfig = %v, %v; want an error about %s", conf, err, tc.field)
			}
		})
	}
}
