// Package bench compares the cost of one UPDATE on this project's server
// with CoreDNS's in-tree dynupdate, at 1 k, 100 k and 1 M records, both
// through the built bin/coredns over loopback, in the same run:
//
//	make bench
//
// Each update replaces one A record, signed with TSIG, and is durable
// (synced to disk) before it is acknowledged in both servers.
package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
	"github.com/openbtmm/btmm/test/coredns"
)

const (
	keyName = "alice.members.example.com."
	secret  = "F42STmDnGmFG1jyejcOLBJFIHgcGsAPxrqiDTI9YerQ="
)

var sizes = []int{1_000, 100_000, 1_000_000}

func BenchmarkUpdate(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("btmm/records=%d", n), func(b *testing.B) {
			s := startBtmm(b, n)
			benchUpdates(b, s, s.UpdateAddr(), "members.example.com.", "change.alice.members.example.com.")
		})
		b.Run(fmt.Sprintf("dynupdate/records=%d", n), func(b *testing.B) {
			s := startDynupdate(b, n)
			benchUpdates(b, s, s.Addr(), "members.example.com.", "change.alice.members.example.com.")
		})
	}
}

// benchUpdates sends b.N signed UPDATEs to addr that replace name's A
// record and reports updates per second beside ns/op.
func benchUpdates(b *testing.B, s *coredns.Server, addr, zone, name string) {
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Minute, TsigSecret: map[string]string{keyName: secret}}
	conn, err := c.Dial(addr)
	if err != nil {
		b.Fatalf("%v\n%s", err, s.Output())
	}
	defer conn.Close()
	send := func(i int) {
		rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A 192.0.2.%d", name, i%250+1))
		m := new(dns.Msg).SetUpdate(zone)
		m.RemoveRRset([]dns.RR{rr})
		m.Insert([]dns.RR{rr})
		m.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
		// A fresh dns.Conn over the same socket per exchange: miekg/dns
		// would sign a second request on one dns.Conn as a response.
		co := &dns.Conn{Conn: conn.Conn, TsigSecret: c.TsigSecret}
		r, _, err := c.ExchangeWithConn(m, co)
		if err != nil || r.Rcode != dns.RcodeSuccess {
			b.Fatalf("update %d: %v %v\n%s", i, err, r, s.Output())
		}
	}
	send(0) // warm up: the first update may create the name
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		send(i + 1)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "updates/s")
}

// startBtmm seeds a store with n records (outside the server, with
// syncing off, which is quick) and starts bin/coredns on it.
func startBtmm(b *testing.B, n int) *coredns.Server {
	dir := b.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "members.db"), "members.example.com.", boltstore.Options{NoSync: true, ManualSweep: true})
	if err != nil {
		b.Fatal(err)
	}
	const batch = 20_000
	for i := 0; i < n; i += batch {
		_, err := st.Update(func(tx store.Tx) error {
			for j := i; j < min(i+batch, n); j++ {
				name := fmt.Sprintf("h%d.u%d.members.example.com.", j, j%5000)
				rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A 198.51.%d.%d", name, j/250%250, j%250+1))
				if err := tx.Set(name, []store.Record{{RR: rr}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	st.Close()
	os.WriteFile(filepath.Join(dir, "users.keys"), []byte(fmt.Sprintf("key %q {\n\talgorithm hmac-sha256;\n\tsecret %q;\n};\n", keyName, secret)), 0o600)
	s := coredns.New(b, dir, `members.example.com:{{PORT}} {
	btmm members.example.com {
		keys users.keys
		store members.db
	}
	ddul-lease
	tsig-update {
		tcp 127.0.0.1:{{UPDATEPORT}}
		max_records 100000
		rate 0
	}
}
`)
	s.Start("members.example.com.")
	return s
}

// startDynupdate writes a zone file of n records and starts bin/coredns
// with CoreDNS's tsig and dynupdate plugins on it, durable (database).
func startDynupdate(b *testing.B, n int) *coredns.Server {
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "db.members"))
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "$ORIGIN members.example.com.")
	fmt.Fprintln(w, "@ 60 IN SOA ns1 hostmaster 1 3600 600 86400 30")
	fmt.Fprintln(w, "@ 60 IN NS ns1")
	fmt.Fprintln(w, "ns1 60 IN A 192.0.2.53")
	for j := range n - 3 {
		fmt.Fprintf(w, "h%d.u%d 60 IN A 198.51.%d.%d\n", j, j%5000, j/250%250, j%250+1)
	}
	w.Flush()
	f.Close()
	s := coredns.New(b, dir, fmt.Sprintf(`members.example.com:{{PORT}} {
	tsig {
		secret %s %s
		require_opcode UPDATE
	}
	dynupdate {
		file db.members
		database dyn.db
		max_records 2000000
		rate 0
		max_bytes 1000000000
		allow %s * *
	}
}
`, keyName, secret, keyName))
	s.StartTimeout("members.example.com.", 10*time.Minute)
	return s
}
