package test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"hash"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/test/coredns"
)

const zone = "members.example.com."

// testKey is a user key as the tests write it into users.keys.
type testKey struct {
	name, alg, secret string // alg as nsupdate -y spells it
}

var (
	alice = testKey{"alice.members.example.com.", "hmac-sha256", "F42STmDnGmFG1jyejcOLBJFIHgcGsAPxrqiDTI9YerQ="}
	bob   = testKey{"bob.members.example.com.", "hmac-sha1", "Ym9ic2VjcmV0Ym9ic2VjcmV0Ym9i"}
	carol = testKey{"carol.members.example.com.", "hmac-sha512", "Y2Fyb2xjYXJvbGNhcm9sY2Fyb2xjYXJvbGNhcm9sY2Fyb2xjYXJvbGNhcm9sY2Fyb2xjYXJvbGNhcm9sMTIzNA=="}
	dave  = testKey{"dave.members.example.com.", "hmac-md5", "ZGF2ZXNlY3JldGRhdmVzZWNyZXQ="}
)

func (k testKey) block() string {
	return fmt.Sprintf("key %q {\n\talgorithm %s;\n\tsecret %q;\n};\n", k.name, k.alg, k.secret)
}

// miekgAlg is the key's algorithm as miekg/dns names it.
func (k testKey) miekgAlg() string {
	if k.alg == "hmac-md5" {
		return dns.HmacMD5
	}
	return dns.Fqdn(k.alg)
}

// ySpec is the key as nsupdate -y and dig -y take it.
func (k testKey) ySpec() string {
	return k.alg + ":" + strings.TrimSuffix(k.name, ".") + ":" + k.secret
}

// needTool is coredns.NeedTool.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	return coredns.NeedTool(t, name, pkg)
}

// corefile is a Corefile for the members zone on the test's ports, with
// UPDATEs on {{UPDATEPORT}} (UDP and TCP) and the given extra lines in the
// ddul-lease and tsig-update blocks.
func corefile(lease, update string) string {
	return fmt.Sprintf(`members.example.com:{{PORT}} {
	btmm members.example.com {
		keys users.keys
		store members.db
		ns ns1.members.example.com. 127.0.0.1
	}
	ddul-lease {
		%s
	}
	tsig-update {
		udp 127.0.0.1:{{UPDATEPORT}}
		tcp 127.0.0.1:{{UPDATEPORT}}
		%s
	}
	errors
}
`, lease, update)
}

// startServer writes the keys and corefile into a new directory and
// starts bin/coredns there.
func startServer(t *testing.T, cf string, keys ...testKey) *coredns.Server {
	t.Helper()
	dir := t.TempDir()
	writeKeys(t, dir, keys...)
	s := coredns.New(t, dir, cf)
	s.Start(zone)
	return s
}

func writeKeys(t *testing.T, dir string, keys ...testKey) {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k.block())
	}
	if err := os.WriteFile(filepath.Join(dir, "users.keys"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// run runs a command with stdin and returns its combined output.
func run(t *testing.T, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// nsupdate sends the update commands to s with the key given as -y.
func nsupdate(t *testing.T, s *coredns.Server, key testKey, commands string, extra ...string) (string, error) {
	t.Helper()
	bin := needTool(t, "nsupdate", "bind9-dnsutils")
	args := append([]string{"-t", "5"}, extra...)
	if key.name != "" {
		args = append(args, "-y", key.ySpec())
	}
	script := fmt.Sprintf("server 127.0.0.1 %d\nzone %s\n%s\nsend\n", s.UpdatePort, zone, commands)
	return run(t, script, bin, args...)
}

// query asks s for name and type over UDP, unsigned.
func query(t *testing.T, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return r
}

// serial returns the zone's SOA serial.
func serial(t *testing.T, addr string) uint32 {
	t.Helper()
	r := query(t, addr, zone, dns.TypeSOA)
	if len(r.Answer) != 1 {
		t.Fatalf("SOA query: %v", r)
	}
	return r.Answer[0].(*dns.SOA).Serial
}

// answers returns the answer section's records as text, sorted by the server.
func answers(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		out = append(out, rr.String())
	}
	return out
}

// signed sends m signed with k (time signed: at) over net ("udp", "tcp"
// or "tcp-tls") and returns the reply, its bytes, the request's MAC and
// the error of verifying the reply's TSIG.
func signed(t *testing.T, netw, addr string, k testKey, m *dns.Msg, at time.Time) (*dns.Msg, []byte, string, error) {
	t.Helper()
	m.SetTsig(k.name, k.miekgAlg(), 300, at.Unix())
	provider := secretProvider(k.secret)
	buf, mac, err := dns.TsigGenerateWithProvider(m, provider, "", false)
	if err != nil {
		t.Fatal(err)
	}
	raw := exchangeRaw(t, netw, addr, buf)
	r := new(dns.Msg)
	if err := r.Unpack(raw); err != nil {
		t.Fatalf("unpacking the reply: %v", err)
	}
	return r, raw, mac, dns.TsigVerifyWithProvider(raw, provider, mac, false)
}

// exchangeRaw sends one message and reads one reply.
func exchangeRaw(t *testing.T, netw, addr string, msg []byte) []byte {
	t.Helper()
	var conn net.Conn
	var err error
	switch netw {
	case "tcp-tls":
		conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	default:
		conn, err = net.Dial(netw, addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	co := &dns.Conn{Conn: conn}
	if _, err := co.Write(msg); err != nil {
		t.Fatal(err)
	}
	raw, err := co.ReadMsgHeader(nil)
	if err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
	return raw
}

// secretProvider computes TSIG HMACs for one secret, MD5 included, which
// miekg/dns no longer offers.
type secretProvider string

func (s secretProvider) Generate(msg []byte, t *dns.TSIG) ([]byte, error) {
	var h func() hash.Hash
	switch dns.CanonicalName(t.Algorithm) {
	case dns.HmacMD5:
		h = md5.New
	case dns.HmacSHA1:
		h = sha1.New
	case dns.HmacSHA256:
		h = sha256.New
	case dns.HmacSHA512:
		h = sha512.New
	default:
		return nil, dns.ErrKeyAlg
	}
	k, err := base64.StdEncoding.DecodeString(string(s))
	if err != nil {
		return nil, err
	}
	mac := hmac.New(h, k)
	mac.Write(msg)
	return mac.Sum(nil), nil
}

func (s secretProvider) Verify(msg []byte, t *dns.TSIG) error {
	want, err := s.Generate(msg, t)
	if err != nil {
		return err
	}
	if got, err := hex.DecodeString(t.MAC); err != nil || !hmac.Equal(got, want) {
		return dns.ErrSig
	}
	return nil
}

// writeCert makes a self-signed certificate for 127.0.0.1 in dir.
func writeCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	return writeCertFor(t, dir, net.IPv4(127, 0, 0, 1))
}

// writeCertFor makes a self-signed certificate for ns1.members.example.com
// and ip in dir, as cert.pem and key.pem.
func writeCertFor(t *testing.T, dir string, ip net.IP) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ns1.members.example.com"},
		DNSNames:     []string{"ns1.members.example.com"},
		IPAddresses:  []net.IP{ip},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func itoa(i int) string { return fmt.Sprint(i) }

// newServerWithKeyFile starts bin/coredns in dir with keyFile as users.keys.
func newServerWithKeyFile(t *testing.T, dir, keyFile string) *coredns.Server {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "users.keys"), []byte(keyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	s := coredns.New(t, dir, corefile("", ""))
	s.Start(zone)
	return s
}
