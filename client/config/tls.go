package config

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
)

// TLSConfig is the TLS client configuration for the server (transport
// "tls"), in one of three ways:
//
//   - by default, the server's certificate chain is verified against the
//     system's roots, and its name against the server name;
//   - with tls_ca, the same against the certificates in that PEM file only;
//   - with tls_pin, the leaf certificate's SubjectPublicKeyInfo must hash
//     (SHA-256) to the pin, and nothing else is checked: not the chain, not
//     the name, not the dates. InsecureSkipVerify turns off Go's own
//     verification and VerifyPeerCertificate makes the pin the only check.
//     That suits a self-signed certificate on one's own server: the pin
//     names the server's key, which is what a CA would have vouched for.
//     The pin is checked on every full handshake; a resumed session (if the
//     caller adds a session cache) was pinned in the handshake it resumes.
//     Only the leaf counts: without a verified chain, a CA certificate in
//     the chain proves nothing, since anyone can send it. Rotating the
//     server's key means changing the pin.
//
// ServerName is tls_server_name when it is set; otherwise it is empty, and
// except with a pin the caller must set it, on a Clone, to the host name the
// SRV records gave for the server before dialling.
//
// The minimum version is TLS 1.2.
func (c *Config) TLSConfig() (*tls.Config, error) {
	if c.Transport != "tls" {
		return nil, c.fieldErr("transport", fmt.Sprintf("%q does not use TLS", c.Transport))
	}
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: c.TLSServerName,
	}
	switch {
	case c.TLSPin != "":
		if c.TLSCA != "" {
			return nil, c.fieldErr("tls_pin", "set together with tls_ca: pin the server's key or name a CA, not both")
		}
		pin, err := decodePin(c.TLSPin)
		if err != nil {
			return nil, c.fieldErr("tls_pin", err.Error())
		}
		conf.InsecureSkipVerify = true // the pin below is the check
		conf.VerifyPeerCertificate = func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if len(rawCerts) == 0 {
				return errors.New("tls_pin: the server sent no certificate")
			}
			leaf, err := x509.ParseCertificate(rawCerts[0])
			if err != nil {
				return fmt.Errorf("tls_pin: the server's certificate: %w", err)
			}
			sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
			if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
				return fmt.Errorf("tls_pin: the server's key has pin %s, not the configured %s", base64.StdEncoding.EncodeToString(sum[:]), c.TLSPin)
			}
			return nil
		}
	case c.TLSCA != "":
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, c.fieldErr("tls_ca", err.Error())
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, c.fieldErr("tls_ca", fmt.Sprintf("no PEM certificate in %s", c.TLSCA))
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// Pin is the tls_pin value for a certificate: the standard base64 of the
// SHA-256 of its SubjectPublicKeyInfo. The same value comes from
//
//	openssl x509 -in cert.pem -noout -pubkey | openssl pkey -pubin -outform der |
//	  openssl dgst -sha256 -binary | base64
func Pin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
