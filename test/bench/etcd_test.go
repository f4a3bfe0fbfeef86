package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/store/etcdstore/etcdtest"
	"github.com/openbtmm/btmm/test/bench/updateload"
	"github.com/openbtmm/btmm/test/coredns"
)

// TestEtcdBench is part of `make bench`: UPDATEs per second at
// concurrency 1 and 32, and the time from an UPDATE to the LLQ event it
// causes, through two bin/coredns instances on a three-member etcd cluster
// (UPDATEs spread over both, the LLQ held on the instance that did not
// take the UPDATE) beside one instance on the file store, in turns, in the
// same run. Under `make test` a short version shows every part works;
// BTMM_BENCH_ETCD=full runs the benchmark.
func TestEtcdBench(t *testing.T) {
	cfg := struct {
		duration       time.Duration
		max, rounds, n int
	}{time.Second, 300, 1, 20}
	full := os.Getenv("BTMM_BENCH_ETCD") == "full"
	if full {
		cfg.duration, cfg.max, cfg.rounds, cfg.n = 10*time.Second, 20_000, 3, 500
	}
	users := userKeys(100)
	file := startBenchServer(t, "store members.db", 0, users)
	// The members sync, as etcd does unless told not to: the file store
	// syncs each commit too.
	cluster := etcdtest.StartWith(t, 3, etcdtest.Options{Fsync: true})
	eps := strings.Join(cluster.Endpoints(), " ")
	a := startBenchServer(t, "etcd "+eps, 0, users)
	b := startBenchServer(t, "etcd "+eps, 0, users)

	type cell struct{ rates, p99 []float64 }
	results := map[string]map[int]*cell{"file": {1: {}, 32: {}}, "etcd": {1: {}, 32: {}}}
	run := func(addr string, c int, prefix string) updateload.Result {
		res, err := updateload.Run(updateload.Config{Addr: addr, Zone: zone, Keys: users, Concurrency: c, Duration: cfg.duration, Max: cfg.max, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		if res.Updates == 0 || res.Failures > res.Updates/10 {
			t.Fatalf("%s c=%d: %v; first failure: %s", addr, c, res, res.FirstError)
		}
		return res
	}
	for round := range cfg.rounds {
		for _, c := range []int{1, 32} {
			prefix := fmt.Sprintf("c%dr%d-", c, round)
			res := run(file.UpdateAddr(), c, prefix)
			results["file"][c].rates = append(results["file"][c].rates, res.Rate())
			results["file"][c].p99 = append(results["file"][c].p99, ms(res.P99))
			if c == 1 {
				res = run(a.UpdateAddr(), 1, prefix)
				results["etcd"][1].rates = append(results["etcd"][1].rates, res.Rate())
				results["etcd"][1].p99 = append(results["etcd"][1].p99, ms(res.P99))
				continue
			}
			// Half the senders through each instance, at once.
			var wg sync.WaitGroup
			var ra, rb updateload.Result
			wg.Go(func() { ra = run(a.UpdateAddr(), c/2, prefix+"a") })
			wg.Go(func() { rb = run(b.UpdateAddr(), c/2, prefix+"b") })
			wg.Wait()
			results["etcd"][c].rates = append(results["etcd"][c].rates, ra.Rate()+rb.Rate())
			results["etcd"][c].p99 = append(results["etcd"][c].p99, max(ms(ra.P99), ms(rb.P99)))
		}
	}
	// Each instance answers what the other acknowledged.
	name := fmt.Sprintf("c32r%d-a0.%s", cfg.rounds-1, users[0].Name)
	if r, err := dns.Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), b.Addr()); err != nil || len(r.Answer) != 1 {
		t.Fatalf("B does not answer %s that A acknowledged: %v %v", name, r, err)
	}

	probeName := "probe.alice.members.example.com."
	fileLat, fileSend := eventLatencies(t, holdLLQs(t, file.LLQAddr(), 1, func(int) string { return probeName }), probeName, file.UpdateAddr(), cfg.n)
	etcdLat, etcdSend := eventLatencies(t, holdLLQs(t, b.LLQAddr(), 1, func(int) string { return probeName }), probeName, a.UpdateAddr(), cfg.n)

	var report strings.Builder
	fmt.Fprintf(&report, "\nfile store (one instance) and etcd (two instances on a three-member cluster, UPDATEs through both, LLQ on the other one), medians of %d rounds in turns:\n\n", cfg.rounds)
	tw := tabwriter.NewWriter(&report, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "store\tc=1 updates/s\tc=1 p99 ms\tc=32 updates/s\tc=32 p99 ms\tLLQ event p50 ms\tp99 ms\tfrom send p50 ms\tp99 ms\t")
	for _, s := range []struct {
		name      string
		lat, send []time.Duration
	}{{"file", fileLat, fileSend}, {"etcd", etcdLat, etcdSend}} {
		r := results[s.name]
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", s.name,
			median(r[1].rates), median(r[1].p99), median(r[32].rates), median(r[32].p99),
			ms(s.lat[len(s.lat)/2]), ms(s.lat[len(s.lat)*99/100]), ms(s.send[len(s.send)/2]), ms(s.send[len(s.send)*99/100]))
	}
	tw.Flush()
	fmt.Fprintf(&report, "etcd / file: c=1 %.2fx, c=32 %.2fx\n",
		median(results["etcd"][1].rates)/median(results["file"][1].rates), median(results["etcd"][32].rates)/median(results["file"][32].rates))
	t.Log(report.String())
	if full {
		fmt.Print(report.String())
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// startBenchServer runs bin/coredns with the zone in store (a btmm
// property: "store FILE" or "etcd ENDPOINT..."), UPDATEs and unsigned
// LLQs over UDP (at most llqs of them; 0: llq's default), the users' keys
// and the probe's.
func startBenchServer(t testing.TB, store string, llqs int, users []keyfile.Key) *coredns.Server {
	dir := t.TempDir()
	keys := append([]keyfile.Key{{Name: keyName, Algorithm: dns.HmacSHA256, Secret: secret}}, users...)
	if err := os.WriteFile(filepath.Join(dir, "users.keys"), keyfile.Format(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	limit := ""
	if llqs > 0 {
		limit = fmt.Sprintf("limit %d", llqs)
	}
	s := coredns.New(t, dir, fmt.Sprintf(`members.example.com:{{PORT}} {
	btmm members.example.com {
		keys users.keys
		%s
	}
	ddul-lease
	tsig-update {
		udp 127.0.0.1:{{UPDATEPORT}}
		max_records 1000000
		rate 0
		max_bytes 100000000
	}
	llq {
		tsig optional
		rate 0
		%s
		udp 127.0.0.1:{{LLQPORT}}
		tcp off
	}
}
`, store, limit))
	s.Start(zone)
	return s
}
