package bench

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
	"github.com/openbtmm/btmm/test/bench/updateload"
	"github.com/openbtmm/btmm/test/coredns"
)

// TestUpdatePeers is `make bench-update`: this server, BIND 9 and Knot on
// the same zone of users, each user's key allowed its own subtree only,
// driven in turns by the same UPDATE load (updateload) at concurrency 1
// and 32; then dnsperf queries against each of them and against CoreDNS's
// own file plugin serving the zone. It prints a table of the medians and
// the ratios.
//
// Under `make test` it runs a short version (a small zone, a second per
// load) that shows every part works: every server takes the UPDATEs, and
// answers what they added. BTMM_BENCH_UPDATE=full runs the benchmark.
func TestUpdatePeers(t *testing.T) {
	named := needTool(t, "named", "bind9")
	knotd := needTool(t, "knotd", "knot")
	dnsperf := needTool(t, "dnsperf", "dnsperf")
	cfg := peerConfig{sizes: []int{2_000}, users: 100, duration: time.Second, max: 300, rounds: 1, queryTime: 2}
	if os.Getenv("BTMM_BENCH_UPDATE") == "full" {
		cfg = peerConfig{sizes: []int{10_000, 100_000, 1_000_000}, users: 1000, duration: 20 * time.Second, max: 20_000, rounds: 3, queryTime: 10}
	}
	// Beyond this many records, this server alone: the peers' start-up
	// (loading a zone file of a million records) would take the run's time.
	const alone = 1_000_000
	keys := userKeys(cfg.users)
	var report strings.Builder
	for _, n := range cfg.sizes {
		servers := []*peer{startBtmmPeer(t, n, keys)}
		var file *peer
		if n < alone {
			servers = append(servers, startBIND(t, named, n, keys), startKnot(t, knotd, n, keys))
			file = startFilePeer(t, n)
		}
		type cell struct{ rates, p50, p99 []float64 }
		results := make(map[string]map[int]*cell)
		for _, c := range []int{1, 32} {
			for round := range cfg.rounds {
				for _, s := range servers {
					res, err := updateload.Run(updateload.Config{
						Addr: s.updateAddr, Zone: zone, Keys: keys, Concurrency: c,
						Duration: cfg.duration, Max: cfg.max, Prefix: fmt.Sprintf("c%dr%d-", c, round),
					})
					if err != nil {
						t.Fatal(err)
					}
					// A few answers lost in time under load, BIND's and Knot's
					// journals syncing, are no failure of the comparison.
					if res.Updates == 0 || res.Failures > res.Updates/10 {
						t.Fatalf("%s, %d records, c=%d: %v; first failure: %s", s.name, n, c, res, res.FirstError)
					}
					if results[s.name] == nil {
						results[s.name] = make(map[int]*cell)
					}
					if results[s.name][c] == nil {
						results[s.name][c] = &cell{}
					}
					r := results[s.name][c]
					r.rates = append(r.rates, res.Rate())
					r.p50 = append(r.p50, float64(res.P50)/float64(time.Millisecond))
					r.p99 = append(r.p99, float64(res.P99)/float64(time.Millisecond))
				}
			}
		}
		// Every server holds what it acknowledged: the first name of the
		// last round, asked over plain DNS.
		for _, s := range servers {
			name := fmt.Sprintf("c32r%d-0.%s", cfg.rounds-1, keys[0].Name)
			r, err := dns.Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), s.queryAddr)
			if err != nil || len(r.Answer) != 1 {
				t.Fatalf("%s does not answer %s that it acknowledged: %v %v", s.name, name, r, err)
			}
		}
		all := servers
		if file != nil {
			all = append(all, file)
		}
		qps := make(map[string]float64)
		for _, s := range all {
			qps[s.name] = queryRate(t, dnsperf, s.queryAddr, n, cfg.users, cfg.queryTime)
		}

		fmt.Fprintf(&report, "\n%d records, %d users (medians of %d runs, servers in turns):\n\n", n, cfg.users, cfg.rounds)
		tw := tabwriter.NewWriter(&report, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "server\tc=1 updates/s\tp50 ms\tc=32 updates/s\tp99 ms\tqueries/s\t")
		for _, s := range all {
			if r := results[s.name]; r != nil {
				fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.0f\t%.2f\t%.0f\t\n", s.name, median(r[1].rates), median(r[1].p50), median(r[32].rates), median(r[32].p99), qps[s.name])
			} else {
				fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t%.0f\t\n", s.name, qps[s.name])
			}
		}
		tw.Flush()
		us := results[servers[0].name]
		for _, peer := range servers[1:] {
			them := results[peer.name]
			fmt.Fprintf(&report, "this server / %s: c=1 %.2fx, c=32 %.2fx, queries %.2fx\n", peer.name,
				median(us[1].rates)/median(them[1].rates), median(us[32].rates)/median(them[32].rates), qps[servers[0].name]/qps[peer.name])
		}
		if file != nil {
			fmt.Fprintf(&report, "this server / CoreDNS file: queries %.2fx\n", qps[servers[0].name]/qps[file.name])
		}
	}
	t.Log(report.String())
	if os.Getenv("BTMM_BENCH_UPDATE") == "full" {
		fmt.Print(report.String())
	}
}

type peerConfig struct {
	sizes     []int
	users     int
	duration  time.Duration
	max       int
	rounds    int
	queryTime int // seconds of dnsperf per server
}

// peer is one server under test.
type peer struct {
	name       string
	updateAddr string
	queryAddr  string
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// userKeys makes one hmac-sha256 key per user u0…, named after the
// user's domain, the same in every run.
func userKeys(n int) []keyfile.Key {
	keys := make([]keyfile.Key, n)
	for i := range keys {
		sum := sha256.Sum256([]byte(fmt.Sprintf("bench user %d", i)))
		keys[i] = keyfile.Key{Name: fmt.Sprintf("u%d.%s", i, zone), Algorithm: dns.HmacSHA256, Secret: base64.StdEncoding.EncodeToString(sum[:])}
	}
	return keys
}

const zone = "members.example.com."

// zoneRecord is record j of a zone of the benchmark's users: one A record
// at a host's name under a user's domain.
func zoneRecord(j, users int) (name, text string) {
	name = fmt.Sprintf("h%d.u%d.%s", j, j%users, zone)
	return name, fmt.Sprintf("%s 60 IN A 198.51.%d.%d", name, j/250%250, j%250+1)
}

// writeZoneFile writes the zone of n records (SOA, NS and the name
// server's address among them) as a master file.
func writeZoneFile(t *testing.T, path string, n, users int) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "$ORIGIN %s\n$TTL 60\n@ SOA ns1 hostmaster 1 3600 600 86400 30\n@ NS ns1\nns1 A 127.0.0.1\n", zone)
	for j := range n - 3 {
		_, text := zoneRecord(j, users)
		fmt.Fprintln(w, text)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func startBtmmPeer(t *testing.T, n int, keys []keyfile.Key) *peer {
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "members.db"), zone, boltstore.Options{NoSync: true, ManualSweep: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(func(tx store.Tx) error {
		for j := range n - 3 { // as many as the zone files hold beside SOA, NS and ns1's A
			name, text := zoneRecord(j, len(keys))
			rr, _ := dns.NewRR(text)
			if err := tx.Set(name, []store.Record{{RR: rr}}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := os.WriteFile(filepath.Join(dir, "users.keys"), keyfile.Format(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	s := coredns.New(t, dir, `members.example.com:{{PORT}} {
	multisocket
	btmm members.example.com {
		keys users.keys
		store members.db
		ns ns1.members.example.com. 127.0.0.1
	}
	ddul-lease
	tsig-update {
		udp 127.0.0.1:{{UPDATEPORT}}
		max_records 1000000
		rate 0
		max_bytes 100000000
	}
}
`)
	s.StartTimeout(zone, 5*time.Minute)
	return &peer{name: "this server", updateAddr: s.UpdateAddr(), queryAddr: s.Addr()}
}

// startFilePeer serves the zone file with CoreDNS's own file plugin from
// bin/coredns: the most a CoreDNS plugin's answers can cost.
func startFilePeer(t *testing.T, n int) *peer {
	dir := t.TempDir()
	writeZoneFile(t, filepath.Join(dir, "db.members"), n, 1)
	s := coredns.New(t, dir, "members.example.com:{{PORT}} {\n\tmultisocket\n\tfile db.members\n}\n")
	s.StartTimeout(zone, 5*time.Minute)
	return &peer{name: "CoreDNS file", queryAddr: s.Addr()}
}

func startBIND(t *testing.T, named string, n int, keys []keyfile.Key) *peer {
	dir := t.TempDir()
	writeZoneFile(t, filepath.Join(dir, "db.members"), n, len(keys))
	if err := os.WriteFile(filepath.Join(dir, "users.keys"), keyfile.Format(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	port := coredns.FreePort(t)
	conf := fmt.Sprintf(`options {
	directory %[1]q;
	managed-keys-directory %[1]q;
	session-keyfile %[2]q;
	pid-file none;
	listen-on port %[3]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
};
controls { };
include %[4]q;
zone "members.example.com" {
	type primary;
	file "db.members";
	update-policy { grant * selfsub * A; };
};
`, dir, filepath.Join(dir, "session.key"), port, filepath.Join(dir, "users.keys"))
	path := filepath.Join(dir, "named.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startDaemon(t, dir, addr, named, "-g", "-c", path)
	return &peer{name: "BIND " + version(named, "-v"), updateAddr: addr, queryAddr: addr}
}

func startKnot(t *testing.T, knotd string, n int, keys []keyfile.Key) *peer {
	dir := t.TempDir()
	writeZoneFile(t, filepath.Join(dir, "db.members"), n, len(keys))
	port := coredns.FreePort(t)
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n    rundir: %q\n    listen: 127.0.0.1@%d\ndatabase:\n    storage: %q\nlog:\n  - target: stderr\n    any: warning\nkey:\n", dir, port, dir)
	var ids []string
	for _, k := range keys {
		fmt.Fprintf(&b, "  - id: %s\n    algorithm: hmac-sha256\n    secret: %s\n", k.Name, k.Secret)
		ids = append(ids, k.Name)
	}
	fmt.Fprintf(&b, "acl:\n  - id: users\n    key: [%s]\n    action: update\n    update-owner: key\n    update-owner-match: sub-or-equal\n", strings.Join(ids, ", "))
	fmt.Fprintf(&b, "zone:\n  - domain: %s\n    file: %q\n    acl: users\n    zonefile-sync: -1\n    journal-content: changes\n", zone, filepath.Join(dir, "db.members"))
	path := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startDaemon(t, dir, addr, knotd, "-c", path)
	return &peer{name: "Knot " + version(knotd, "--version"), updateAddr: addr, queryAddr: addr}
}

// startDaemon runs a server in the foreground in its own process group,
// killed when the test ends, and waits until addr answers SOA.
func startDaemon(t *testing.T, dir, addr, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out := new(coredns.Output)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-done })
	deadline := time.Now().Add(5 * time.Minute)
	for {
		r, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(new(dns.Msg).SetQuestion(zone, dns.TypeSOA), addr)
		if err == nil && r.Rcode == dns.RcodeSuccess {
			return
		}
		select {
		case <-done:
			t.Fatalf("%s exited while starting:\n%s", bin, out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within 5 minutes:\n%s", bin, out)
		}
	}
}

var versionRE = regexp.MustCompile(`\d+\.\d+(\.\d+)?`)

// version returns the x.y.z that a server prints for its version flag.
func version(bin, flag string) string {
	out, _ := exec.Command(bin, flag).CombinedOutput()
	return versionRE.FindString(string(out))
}

var qpsRE = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)

// queryRate runs dnsperf for secs seconds against addr with A queries
// for names of the zone, and returns its queries per second.
func queryRate(t *testing.T, dnsperf, addr string, n, users, secs int) float64 {
	t.Helper()
	path := filepath.Join(t.TempDir(), "queries")
	var b strings.Builder
	for range 10_000 {
		name, _ := zoneRecord(rand.IntN(n-3), users)
		fmt.Fprintf(&b, "%s A\n", name)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command(dnsperf, "-s", host, "-p", port, "-d", path, "-l", strconv.Itoa(secs), "-c", "4", "-q", "200").CombinedOutput()
	m := qpsRE.FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("dnsperf against %s: %v\n%s", addr, err, out)
	}
	q, _ := strconv.ParseFloat(string(m[1]), 64)
	return q
}

// needTool is coredns.NeedTool.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	return coredns.NeedTool(t, name, pkg)
}
