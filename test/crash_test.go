package test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestKillUnderLoad: 32 clients send UPDATEs as fast as they are answered
// while the server is killed with SIGKILL at a random moment; after the
// restart every UPDATE that was acknowledged is there. Ten trials (twenty
// in make bench-update) on the same store, so that later trials also replay onto checkpoints and logs
// left by earlier crashes.
func TestKillUnderLoad(t *testing.T) {
	s := startServer(t, corefile("", "max_records 1000000\n\t\tmax_bytes 100000000"), alice)
	const clients = 32
	trials := 10
	if os.Getenv("BTMM_BENCH_UPDATE") == "full" { // make bench-update
		trials = 20
	}
	total := 0
	for trial := range trials {
		var (
			mu    sync.Mutex
			acked []string
			stop  = make(chan struct{})
			wg    sync.WaitGroup
		)
		for w := range clients {
			wg.Go(func() {
				c := &dns.Client{Net: "udp", Timeout: time.Second, TsigSecret: map[string]string{alice.name: alice.secret}}
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("t%d-c%d-%d.alice.members.example.com.", trial, w, i)
					m := new(dns.Msg).SetUpdate(zone)
					m.Insert([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, byte(i))}})
					m.SetTsig(alice.name, alice.miekgAlg(), 300, time.Now().Unix())
					r, _, err := c.Exchange(m, s.UpdateAddr())
					if err != nil {
						return // the server is gone
					}
					if r.Rcode != dns.RcodeSuccess {
						t.Errorf("UPDATE %s: %s", name, dns.RcodeToString[r.Rcode])
						return
					}
					mu.Lock()
					acked = append(acked, name)
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		s.Kill()
		close(stop)
		wg.Wait()
		s.Start(zone)

		c := &dns.Client{Net: "tcp"}
		conn, err := c.Dial(s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		lost := 0
		for _, name := range acked {
			r, _, err := c.ExchangeWithConn(new(dns.Msg).SetQuestion(name, dns.TypeA), conn)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Answer) != 1 {
				lost++
				if lost <= 5 {
					t.Errorf("trial %d: %s was acknowledged and is gone after kill -9: %v", trial, name, dns.RcodeToString[r.Rcode])
				}
			}
		}
		conn.Close()
		if lost > 0 {
			t.Fatalf("trial %d: %d of %d acknowledged UPDATEs lost", trial, lost, len(acked))
		}
		if len(acked) == 0 {
			t.Fatalf("trial %d: no UPDATE was acknowledged before the kill\n%s", trial, s.Output())
		}
		total += len(acked)
	}
	t.Logf("%d trials: %d UPDATEs acknowledged, all found after kill -9", trials, total)
}
