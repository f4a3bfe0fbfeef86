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
	s := startServer(t, corefile("", "max_records 1000000\n\t\tmax_bytes 100000000\n\t\trate 0"), alice)
	const clients = 32
	trials := 10
	if os.Getenv("BTMM_BENCH_UPDATE") == "full" { // make bench-update
		trials = 20
	}
	total := 0
	for trial := range trials {
		load := startUpdateLoad(t, s.UpdateAddr(), fmt.Sprintf("t%d", trial), clients)
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		s.Kill()
		acked := load.stop()
		s.Start(zone)

		lost := missing(t, s.Addr(), acked, func(name string, rcode int) {
			t.Errorf("trial %d: %s was acknowledged and is gone after kill -9: %v", trial, name, dns.RcodeToString[rcode])
		})
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

// updateLoad is clients sending signed UPDATEs (one new A record each) as
// fast as they are answered, until the server is gone or stop.
type updateLoad struct {
	mu    sync.Mutex
	acked []string
	done  chan struct{}
	wg    sync.WaitGroup
}

// startUpdateLoad starts clients UPDATE senders to addr, naming their
// records after tag.
func startUpdateLoad(t *testing.T, addr, tag string, clients int) *updateLoad {
	l := &updateLoad{done: make(chan struct{})}
	for w := range clients {
		l.wg.Go(func() {
			c := &dns.Client{Net: "udp", Timeout: time.Second, TsigSecret: map[string]string{alice.name: alice.secret}}
			for i := 0; ; i++ {
				select {
				case <-l.done:
					return
				default:
				}
				name := fmt.Sprintf("%s-c%d-%d.alice.members.example.com.", tag, w, i)
				m := new(dns.Msg).SetUpdate(zone)
				m.Insert([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, byte(i))}})
				m.SetTsig(alice.name, alice.miekgAlg(), 300, time.Now().Unix())
				r, _, err := c.Exchange(m, addr)
				if err != nil {
					return // the server is gone
				}
				if r.Rcode != dns.RcodeSuccess {
					t.Errorf("UPDATE %s: %s", name, dns.RcodeToString[r.Rcode])
					return
				}
				l.mu.Lock()
				l.acked = append(l.acked, name)
				l.mu.Unlock()
			}
		})
	}
	return l
}

// stop ends the load and returns the names of the acknowledged UPDATEs.
func (l *updateLoad) stop() []string {
	close(l.done)
	l.wg.Wait()
	return l.acked
}

// missing queries addr for each name's A record and returns how many are
// not there, reporting the first five to report.
func missing(t *testing.T, addr string, names []string, report func(name string, rcode int)) int {
	t.Helper()
	c := &dns.Client{Net: "tcp"}
	conn, err := c.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lost := 0
	for _, name := range names {
		r, _, err := c.ExchangeWithConn(new(dns.Msg).SetQuestion(name, dns.TypeA), conn)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Answer) != 1 {
			if lost++; lost <= 5 {
				report(name, r.Rcode)
			}
		}
	}
	return lost
}
