package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/test/bench/updateload"
	"github.com/openbtmm/btmm/test/coredns"
)

// TestFairness is part of `make bench`: one user floods the server with
// UPDATEs (32 senders, as fast as they are answered) while another sends
// its own at a host's pace; the second user's latency with the flood is
// compared with its latency alone, on a server with tsig-update's default
// per-key rate and on one without a rate. Under `make test` a short
// version shows it works; BTMM_BENCH_FAIR=full runs the benchmark.
func TestFairness(t *testing.T) {
	d, rounds := time.Second, 1
	full := os.Getenv("BTMM_BENCH_FAIR") == "full"
	if full {
		d, rounds = 10*time.Second, 3
	}
	// The other user sends as a user's hosts do, within its rate: its
	// latency is what is measured, not how fast it can go.
	const pace = 5
	users := userKeys(2)
	flooder, other := users[:1], users[1:]
	var report strings.Builder
	tw := tabwriter.NewWriter(&report, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\talone p50 ms\tp99 ms\twith the flood p50 ms\tp99 ms\tp50 ratio\tflood taken/s\tflood refused or dropped/s\t")
	for _, srv := range []struct{ name, rate string }{{"default rate", ""}, {"no rate", "rate 0"}} {
		s := startFairnessServer(t, srv.rate, users)
		var alone, loaded []updateload.Result
		var flood []updateload.Result
		for r := range rounds {
			res, err := updateload.Run(updateload.Config{Addr: s.UpdateAddr(), Zone: zone, Keys: other, Duration: d, Rate: pace, Prefix: fmt.Sprintf("alone%d-", r)})
			if err != nil || res.Updates == 0 || res.Failures > 0 {
				t.Fatalf("%s, alone: %v %v; first failure %s", srv.name, res, err, res.FirstError)
			}
			alone = append(alone, res)
			stop := make(chan struct{})
			done := make(chan updateload.Result, 1)
			go func() {
				res, _ := updateload.Run(updateload.Config{Addr: s.UpdateAddr(), Zone: zone, Keys: flooder, Concurrency: 32, Stop: stop, Prefix: fmt.Sprintf("flood%d-", r)})
				done <- res
			}()
			time.Sleep(200 * time.Millisecond) // the flood under way
			res, err = updateload.Run(updateload.Config{Addr: s.UpdateAddr(), Zone: zone, Keys: other, Duration: d, Rate: pace, Prefix: fmt.Sprintf("loaded%d-", r)})
			close(stop)
			flood = append(flood, <-done)
			if err != nil || res.Updates == 0 || res.Failures > 0 {
				t.Fatalf("%s, with the flood: %v %v; first failure %s", srv.name, res, err, res.FirstError)
			}
			loaded = append(loaded, res)
		}
		p := func(rs []updateload.Result, f func(updateload.Result) time.Duration) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = ms(f(r))
			}
			return median(v)
		}
		p50 := func(r updateload.Result) time.Duration { return r.P50 }
		p99 := func(r updateload.Result) time.Duration { return r.P99 }
		var ok, refused []float64
		for _, f := range flood {
			ok = append(ok, f.Rate())
			refused = append(refused, float64(f.Failures)/f.Elapsed.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f\t\n", srv.name, p(alone, p50), p(alone, p99), p(loaded, p50), p(loaded, p99),
			p(loaded, p50)/p(alone, p50), median(ok), median(refused))
	}
	tw.Flush()
	t.Log("\n" + report.String())
	if full {
		fmt.Print("\none user flooding, another's UPDATE latency (medians of ", rounds, " rounds):\n\n", report.String())
	}
}

// startFairnessServer runs bin/coredns with the users' keys and rate (a
// tsig-update property; "" for the default).
func startFairnessServer(t *testing.T, rate string, users []keyfile.Key) *coredns.Server {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "users.keys"), keyfile.Format(users), 0o600); err != nil {
		t.Fatal(err)
	}
	s := coredns.New(t, dir, fmt.Sprintf(`members.example.com:{{PORT}} {
	btmm members.example.com {
		keys users.keys
		store members.db
	}
	ddul-lease
	tsig-update {
		udp 127.0.0.1:{{UPDATEPORT}}
		max_records 1000000
		max_bytes 100000000
		%s
	}
}
`, rate))
	s.Start(zone)
	return s
}
