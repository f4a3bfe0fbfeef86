package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/dnspush"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/test/coredns"
)

// TestPushBench is part of `make bench`: the time from an UPDATE's
// acknowledgement to the change's arrival at a watching client, by DNS
// Push and by LLQ, in the same server and run, with 1,000 and 100,000
// other subscriptions (or LLQs) live on other names; and the server's
// memory per subscription and per LLQ. Under `make test` it runs the
// 1,000 case to show that it works; BTMM_BENCH_PUSH=full runs both.
func TestPushBench(t *testing.T) {
	sizes, updates := []int{1_000}, 100
	full := os.Getenv("BTMM_BENCH_PUSH") == "full"
	if full {
		sizes, updates = []int{1_000, 100_000}, 1000
	}
	var report strings.Builder
	tw := tabwriter.NewWriter(&report, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "others live\tpath\tack→change p50 µs\tp99 µs\tsend→change p50 µs\tp99 µs\tbytes each\t")
	for _, n := range sizes {
		s := startPushServer(t, n+10)
		pid := s.Pid()

		// DNS Push: n subscriptions over n/1000 sessions, then the probe.
		before := memory(t, pid)
		var wg sync.WaitGroup
		sessions := make([]*dnspush.Session, max(1, n/1000))
		for i := range sessions {
			sess := dialPushBench(t, s)
			sessions[i] = sess
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range n / len(sessions) {
					if _, err := sess.Subscribe(context.Background(), fmt.Sprintf("h%d.u%d.%s", j, i, zone), dns.TypeA); err != nil {
						t.Errorf("subscription %d of session %d: %v", j, i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		pushBytes := (memory(t, pid).anon - before.anon) * (1 << 20) / float64(n)
		probeName := "probe.alice.members.example.com."
		probe := dialPushBench(t, s)
		if _, err := probe.Subscribe(context.Background(), probeName, dns.TypeA); err != nil {
			t.Fatal(err)
		}
		lat, fromSend := pushLatencies(t, probe, probeName, s.UpdateAddr(), updates)
		fmt.Fprintf(tw, "%d\tDNS Push\t%d\t%d\t%d\t%d\t%.0f\t\n", n, lat[len(lat)/2].Microseconds(), lat[len(lat)*99/100].Microseconds(),
			fromSend[len(fromSend)/2].Microseconds(), fromSend[len(fromSend)*99/100].Microseconds(), pushBytes)
		for _, sess := range sessions {
			sess.Close()
		}
		probe.Close()

		// LLQ, on the same server: n LLQs, then the probe.
		before = memory(t, pid)
		for i := range max(1, n/1000) {
			holdLLQs(t, s.LLQAddr(), min(n, 1000), func(j int) string { return fmt.Sprintf("l%d.u%d.%s", j, i, zone) })
		}
		llqBytes := (memory(t, pid).anon - before.anon) * (1 << 20) / float64(n)
		llqProbe := holdLLQs(t, s.LLQAddr(), 1, func(int) string { return probeName })
		lat, fromSend = eventLatencies(t, llqProbe, probeName, s.UpdateAddr(), updates)
		fmt.Fprintf(tw, "%d\tLLQ\t%d\t%d\t%d\t%d\t%.0f\t\n", n, lat[len(lat)/2].Microseconds(), lat[len(lat)*99/100].Microseconds(),
			fromSend[len(fromSend)/2].Microseconds(), fromSend[len(fromSend)*99/100].Microseconds(), llqBytes)
		s.Stop()
	}
	tw.Flush()
	t.Log("\n" + report.String())
	if full {
		fmt.Print("\nchange latency, DNS Push beside LLQ (memory: the server's heap growth per subscription):\n\n", report.String())
	}
}

func startPushServer(t *testing.T, limit int) *coredns.Server {
	t.Helper()
	dir := t.TempDir()
	keys := []keyfile.Key{{Name: keyName, Algorithm: dns.HmacSHA256, Secret: secret}}
	if err := os.WriteFile(filepath.Join(dir, "users.keys"), keyfile.Format(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	s := coredns.New(t, dir, fmt.Sprintf(`members.example.com:{{PORT}} {
	btmm members.example.com {
		keys users.keys
		store members.db
	}
	tsig-update {
		udp 127.0.0.1:{{UPDATEPORT}}
		rate 0
	}
	llq {
		tsig optional
		rate 0
		limit %d
		udp 127.0.0.1:{{LLQPORT}}
		tcp off
	}
	dns-push {
		tsig optional
		limit %d
		tcp 127.0.0.1:{{TLSPORT}}
	}
}
`, limit, limit))
	s.Start(zone)
	return s
}

func dialPushBench(t *testing.T, s *coredns.Server) *dnspush.Session {
	t.Helper()
	sess, err := dnspush.Dial(context.Background(), dnspush.Config{Server: s.TLSAddr(), Pushes: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

// pushLatencies is eventLatencies for a DNS Push session subscribed to
// probeName.
func pushLatencies(t *testing.T, probe *dnspush.Session, probeName, updateAddr string, n int) (lat, fromSend []time.Duration) {
	arrived := make(chan time.Time, 16)
	go func() {
		for range probe.Pushes() {
			arrived <- time.Now()
		}
	}()
	return updateLatencies(t, arrived, probeName, updateAddr, n)
}
