package btmm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"

	"github.com/openbtmm/btmm/plugin/pkg/setuptest"
)

const aliceKey = `key "alice.members.example.com." {
	algorithm hmac-sha256;
	secret "F42STmDnGmFG1jyejcOLBJFIHgcGsAPxrqiDTI9YerQ=";
};
`

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	keys := writeFile(t, dir, "users.keys", aliceKey)
	outside := writeFile(t, dir, "outside.keys", strings.Replace(aliceKey, "alice.members.example.com.", "alice.example.net.", 1))
	ca := writeCA(t, dir)
	broken := writeFile(t, dir, "broken.keys", "key \"a.members.example.com.\" {\n\talgorithm hmac-sha256;\n\tsecret \"!!!\";\n};\n")

	// The server block's zone, for a directive that names none.
	parseIn := func(c *caddy.Controller) (*Btmm, error) {
		c.ServerBlockKeys = []string{"members.example.com."}
		return parse(c)
	}
	setuptest.Run(t, parseIn, []setuptest.Case[*Btmm]{
		{Input: "btmm members.example.com {\n keys " + keys + "\n}"},
		{Input: "btmm {\n keys " + keys + "\n store " + dir + "/m.db\n ns ns1.members.example.com. 192.0.2.53 2001:db8::53\n ns ns2.example.net.\n}",
			Check: func(t testing.TB, b *Btmm) {
				if b.zone != zone || b.storePath != dir+"/m.db" || len(b.ns) != 2 || len(b.ns[0].addrs) != 2 {
					t.Errorf("zone %q, store %q, name servers %v", b.zone, b.storePath, b.ns)
				}
			}},
		{Input: "btmm Members.Example.COM {\n keys " + keys + "\n}",
			Check: func(t testing.TB, b *Btmm) {
				if b.zone != zone {
					t.Errorf("zone %q, want %q", b.zone, zone)
				}
				if b.storePath != "members.example.com.db" {
					t.Errorf("default store %q", b.storePath)
				}
				if k := b.keys["alice.members.example.com."]; k.Algorithm != "hmac-sha256." {
					t.Errorf("key lookup: %+v", k)
				}
			}},
		{Input: "btmm members.example.com {\n keys " + keys + "\n keys " + keys + "\n}", WantErr: "more than once"},
		{Input: "btmm members.example.com {\n keys " + keys + "\n bogus 1\n}", WantErr: `unknown property "bogus"`},
		{Input: "btmm members.example.com {\n keys " + keys + "\n ns ns1.members.example.com.\n}", WantErr: "needs an address"},
		{Input: "btmm members.example.com {\n keys " + keys + "\n ns ns1.members.example.com. not-an-ip\n}", WantErr: "invalid address"},
		{Input: "btmm members.example.com {\n keys " + outside + "\n}", WantErr: "not a user's domain"},
		{Input: "btmm members.example.com {\n keys " + broken + "\n}", WantErr: "broken.keys:3"},
		{Input: "btmm members.example.com {\n keys " + dir + "/missing.keys\n}", WantErr: "missing.keys"},
		{Input: "btmm a.example. b.example. {\n keys " + keys + "\n}", WantErr: "Wrong argument count"},
		{Input: "btmm members.example.com {\n keys " + keys + "\n etcd http://127.0.0.1:2379 https://10.0.0.2:2379 {\n  prefix /zones/members/\n }\n ns ns2.example.net.\n}",
			Check: func(t testing.TB, b *Btmm) {
				if b.etcd == nil || len(b.etcd.endpoints) != 2 || b.etcd.prefix != "/zones/members" || b.storePath != "" || len(b.ns) != 1 {
					t.Errorf("etcd %+v, store %q, ns %v", b.etcd, b.storePath, b.ns)
				}
			}},
		{Input: "btmm members.example.com {\n keys " + keys + "\n etcd http://127.0.0.1:2379\n}",
			Check: func(t testing.TB, b *Btmm) {
				if b.etcd == nil || b.etcd.prefix != "/btmm/members.example.com" || b.etcd.tls != nil {
					t.Errorf("default prefix: etcd %+v", b.etcd)
				}
			}},
		{Input: "btmm members.example.com {\n keys " + keys + "\n store m.db\n etcd http://127.0.0.1:2379\n}", WantErr: "alternatives"},
		{Input: "btmm members.example.com {\n keys " + keys + "\n etcd\n}", WantErr: "at least one endpoint"},
		{Input: "btmm members.example.com {\n keys " + keys + "\n etcd 127.0.0.1:2379\n}", WantErr: "not an http:// or https:// URL"},
		{Input: "btmm members.example.com {\n keys " + keys + "\n etcd http://127.0.0.1:2379 {\n  prefix relative\n }\n}", WantErr: "starts with /"},
		{Input: "btmm members.example.com {\n keys " + keys + "\n etcd http://127.0.0.1:2379 {\n  user root\n }\n}", WantErr: `unknown property "user"`},
		{Input: "btmm members.example.com {\n keys " + keys + "\n etcd https://127.0.0.1:2379 {\n  tls " + dir + "/missing-ca.pem\n }\n}", WantErr: "missing-ca.pem"},
		{Input: "btmm members.example.com {\n keys " + keys + "\n etcd https://127.0.0.1:2379 {\n  tls " + ca + "\n }\n}",
			Check: func(t testing.TB, b *Btmm) {
				if b.etcd.tls == nil || b.etcd.tls.RootCAs == nil || len(b.etcd.tls.Certificates) != 0 {
					t.Errorf("tls CA: %+v, want the CA's pool and no client certificate", b.etcd.tls)
				}
			}},
	})
}

// writeCA writes a self-signed CA certificate (PEM) into dir and returns
// its path.
func writeCA(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}
