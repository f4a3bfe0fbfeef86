package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/adminapi"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
	"github.com/openbtmm/btmm/test/bench/updateload"
	"github.com/openbtmm/btmm/test/coredns"
)

// TestUsersBench is part of `make bench`: a server with many users, kept
// in the store (the admin socket's way) beside the same users in a key
// file (the reload's way). For each it reports the time from starting
// bin/coredns to its first answer, the memory the users take (the
// server's resident memory beyond that of a server with none, after a
// little load), and the time to add and to revoke one user while other
// users' UPDATEs and queries go on, with those users' p99 latencies
// without changes and during them. Under `make test` it runs with 20,000
// users to show that it works; BTMM_BENCH_USERS=full runs 1,000,000.
func TestUsersBench(t *testing.T) {
	n, cycles, window := 20_000, 5, 2*time.Second
	full := os.Getenv("BTMM_BENCH_USERS") == "full"
	if full {
		n, cycles, window = 1_000_000, 20, 5*time.Second
	}
	keys := userKeys(n)
	load := keys[:8] // the users whose UPDATEs and queries go on

	var report strings.Builder
	tw := tabwriter.NewWriter(&report, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%d users\tstart-up s\tanon MiB\tfile MiB\tadd p50 ms\tadd max ms\trevoke p50 ms\trevoke max ms\tothers' UPDATE p99 ms\tduring changes\tquery p99 ms\tduring changes\t\n", n)

	empty := startUsersServer(t, t.TempDir(), "")
	warm(t, empty, nil)
	base := memory(t, empty.Pid())
	empty.Stop()
	fmt.Fprintf(tw, "no users\t\t%.0f\t%.0f\t\t\t\t\t\t\t\t\t\n", base.anon, base.file)

	// The users in the store, written as an import would.
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "members.db"), zone, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 100_000 {
		batch := make([]store.User, 0, 100_000)
		for _, k := range keys[i:min(n, i+100_000)] {
			batch = append(batch, store.User{Key: k})
		}
		if err := st.PutUsers(batch); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	began := time.Now()
	s := startUsersServer(t, dir, "")
	startup := time.Since(began)
	warm(t, s, load)
	mem := memory(t, s.Pid())
	admin := adminapi.NewClient(filepath.Join(dir, "admin.sock"))
	var adds, revokes []time.Duration
	calm, busy := underLoad(t, s, load, window, func() {
		for i := range cycles {
			name := fmt.Sprintf("new%d", i)
			at := time.Now()
			u, err := admin.Add(context.Background(), adminapi.AddRequest{Name: name})
			if err != nil {
				t.Fatal(err)
			}
			adds = append(adds, time.Since(at))
			k := keyfile.Key{Name: u.Name, Algorithm: dns.HmacSHA256, Secret: u.Secret}
			// Its first UPDATE works at once, with no reload.
			if !updateWorks(k) {
				t.Fatalf("the first UPDATE of %s, just added, failed", u.Name)
			}
			at = time.Now()
			if _, err := admin.Revoke(context.Background(), name, false); err != nil {
				t.Fatal(err)
			}
			revokes = append(revokes, time.Since(at))
			if updateWorks(k) {
				t.Fatalf("an UPDATE of %s, just revoked, succeeded", u.Name)
			}
		}
	})
	row(tw, "store", startup, mem, base, adds, revokes, calm, busy)
	s.Stop()

	// The same users in a key file, added and revoked by rewriting it
	// and reloading (SIGUSR1).
	dir = t.TempDir()
	file := filepath.Join(dir, "users.keys")
	if err := os.WriteFile(file, keyfile.Format(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	s = startUsersServer(t, dir, "keys users.keys")
	startup = time.Since(began)
	warm(t, s, load)
	mem = memory(t, s.Pid())
	keyCycles := max(1, cycles/5)
	adds, revokes = nil, nil
	calm, busy = underLoad(t, s, load, window, func() {
		for i := range keyCycles {
			k := userKeys(n + i + 1)[n+i]
			at := time.Now()
			if err := os.WriteFile(file, keyfile.Format(append(slices.Clone(keys), k)), 0o600); err != nil {
				t.Fatal(err)
			}
			s.Signal(syscall.SIGUSR1)
			if !waitFor(func() bool { return updateWorks(k) }) {
				t.Fatalf("%s never worked after the reload:\n%s", k.Name, s.Output())
			}
			adds = append(adds, time.Since(at))
			at = time.Now()
			if err := os.WriteFile(file, keyfile.Format(keys), 0o600); err != nil {
				t.Fatal(err)
			}
			s.Signal(syscall.SIGUSR1)
			if !waitFor(func() bool { return !updateWorks(k) }) {
				t.Fatalf("%s still worked after the reload that removed it", k.Name)
			}
			revokes = append(revokes, time.Since(at))
		}
	})
	row(tw, "key file", startup, mem, base, adds, revokes, calm, busy)
	s.Stop()

	tw.Flush()
	t.Log("\n" + report.String())
	if full {
		fmt.Print("\nusers in the store beside users in a key file (memory beyond a server with none):\n\n", report.String())
	}
}

// startUsersServer runs bin/coredns in dir on the store members.db there,
// with its admin socket, and with keysLine in the btmm block.
func startUsersServer(t *testing.T, dir, keysLine string) *coredns.Server {
	t.Helper()
	s := coredns.New(t, dir, fmt.Sprintf(`members.example.com:{{PORT}} {
	btmm members.example.com {
		store members.db
		admin admin.sock
		%s
	}
	tsig-update {
		udp 127.0.0.1:{{UPDATEPORT}}
		max_records 1000000
		max_bytes 100000000
		rate 0
	}
}
`, keysLine))
	s.StartTimeout(zone, 5*time.Minute)
	return s
}

// updateAddr is the UPDATE address of the server under test; set by
// underLoad and warm, read by updateWorks.
var updateAddr string

// updateWorks sends one UPDATE signed with k and reports whether it was
// taken.
func updateWorks(k keyfile.Key) bool {
	res, _ := updateload.Run(updateload.Config{Addr: updateAddr, Zone: zone, Keys: []keyfile.Key{k}, Max: 1, Timeout: time.Second, Prefix: "probe-"})
	return res.Updates == 1
}

func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// warm sends a little of the load, so that memory is measured on a
// server that has served.
func warm(t *testing.T, s *coredns.Server, users []keyfile.Key) {
	t.Helper()
	updateAddr = s.UpdateAddr()
	if len(users) > 0 {
		if res, err := updateload.Run(updateload.Config{Addr: s.UpdateAddr(), Zone: zone, Keys: users, Max: 500, Concurrency: 4, Prefix: "warm-"}); err != nil || res.Failures > 0 {
			t.Fatalf("warming: %v %v %s", res, err, res.FirstError)
		}
	}
	queries(s.Addr(), time.Second, nil)
}

// latencies is what the other users saw in one window.
type latencies struct{ update, query time.Duration }

// underLoad runs the other users' UPDATEs (200/s) and queries (500/s) for
// window without changes, then again while change runs (and at least
// window), and returns their p99s in each.
func underLoad(t *testing.T, s *coredns.Server, users []keyfile.Key, window time.Duration, change func()) (calm, busy latencies) {
	t.Helper()
	updateAddr = s.UpdateAddr()
	measure := func(during func()) latencies {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var up updateload.Result
		var q []time.Duration
		wg.Add(2)
		go func() {
			defer wg.Done()
			up, _ = updateload.Run(updateload.Config{Addr: s.UpdateAddr(), Zone: zone, Keys: users, Concurrency: 4, Rate: 200, Stop: stop, Prefix: "load-"})
		}()
		go func() { defer wg.Done(); q = queries(s.Addr(), 0, stop) }()
		at := time.Now()
		if during != nil {
			during()
		}
		time.Sleep(window - time.Since(at))
		close(stop)
		wg.Wait()
		if up.Updates == 0 || up.Failures > 0 {
			t.Fatalf("the other users' UPDATEs: %v %s", up, up.FirstError)
		}
		return latencies{update: up.P99, query: p99(q)}
	}
	calm = measure(nil)
	busy = measure(change)
	return calm, busy
}

// queries asks for the load users' names at 500/s until stop is closed
// (or for d) and returns each answer's latency.
func queries(addr string, d time.Duration, stop <-chan struct{}) []time.Duration {
	c := &dns.Client{Timeout: time.Second}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	var end <-chan time.Time
	if d > 0 {
		end = time.After(d)
	}
	var lat []time.Duration
	for i := 0; ; i++ {
		select {
		case <-stop:
			return lat
		case <-end:
			return lat
		case <-tick.C:
		}
		m := new(dns.Msg).SetQuestion(fmt.Sprintf("load-%d.u%d.%s", i, i%8, zone), dns.TypeA)
		at := time.Now()
		if _, _, err := c.Exchange(m, addr); err == nil {
			lat = append(lat, time.Since(at))
		}
	}
}

func p99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)*99/100]
}

func p50(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// rss is a process's resident memory, in MiB: anonymous (the heap and
// stacks) and file-backed (the binary, and the store's memory map).
type rss struct{ anon, file float64 }

func memory(t *testing.T, pid int) rss {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var r rss
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "RssAnon:":
			r.anon = kb / 1024
		case "RssFile:":
			r.file = kb / 1024
		}
	}
	return r
}

func row(tw *tabwriter.Writer, name string, startup time.Duration, mem, base rss, adds, revokes []time.Duration, calm, busy latencies) {
	fmt.Fprintf(tw, "%s\t%.2f\t%.0f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", name, startup.Seconds(),
		mem.anon-base.anon, mem.file-base.file,
		ms(p50(adds)), ms(slices.Max(adds)), ms(p50(revokes)), ms(slices.Max(revokes)),
		ms(calm.update), ms(busy.update), ms(calm.query), ms(busy.query))
}
