// Package tunnelbench measures TCP throughput through the btmm tunnel and
// through wireguard-go in the same lab, on the same path: a laptop behind
// NAT A sends to a desktop behind NAT B with iperf3, first through the
// tunnels that two bin/btmm-client set up (ESP in UDP), then through two
// wireguard-go processes (built from the Go module proxy at the version
// go.mod pins, `make wireguard-go`) in the same two namespaces, then
// through btmm again with WireGuard's cipher (ChaCha20-Poly1305), and so on
// in turns, and through btmm with the desktop in userspace mode (no TUN
// device: the stream reaches iperf3 through a forwarded port); each one
// way, then both ways at once (iperf3 --bidir). It
// prints each run, the medians, the ratios with the same cipher, "ratio X"
// (btmm as it runs by default / wireguard-go, one way) and "ratio both
// ways X"; given a baseline (an older btmm-client), it is measured in the
// same turns. It is `make bench-tunnel` (btmm-lab bench-tunnel).
//
// Fairness: both run at the same time in the same namespaces (the idle one
// costs nothing), cross the same two NATs, carry the same inner MTU (1432,
// btmm's; WireGuard's own overhead would allow 1440 over IPv4) and use the
// kernel offloads their code enables. WireGuard's desktop side is made
// reachable by a NAT-PMP mapping, as btmm-client's is.
package tunnelbench

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	natpmp "github.com/jackpal/go-nat-pmp"

	"github.com/openbtmm/btmm/client/daemon"
	"github.com/openbtmm/btmm/test/lab"
	"github.com/openbtmm/btmm/test/lab/system"
)

// Options say what to run and how long.
type Options struct {
	Bin      string        // coredns, btmm-client and wireguard-go (bin/)
	Duration time.Duration // of each iperf3 run; 0: 10 s
	Runs     int           // runs of each, in turns; 0: 3
	// Baseline, if set, is another btmm-client binary (an older build)
	// measured in the same turns, both hosts restarted on it.
	Baseline string
	Out      io.Writer // the report
	Logf     lab.Logf  // the lab's log (nil: none)
}

// Result is what Run measured, in bits per second of TCP payload received:
// btmm with the suite it chose, btmm with ChaCha20-Poly1305, wireguard-go,
// and the baseline build if one was given; one way, and both ways at once
// (the two directions added).
type Result struct {
	Btmm, BtmmChaCha, WireGuard, Baseline, Userspace                          []float64
	BtmmBidir, BtmmChaChaBidir, WireGuardBidir, BaselineBidir, UserspaceBidir []float64
}

// Ratio is the median btmm run (its own choice of suite, as a user runs
// it) over the median wireguard-go run, one way.
func (r Result) Ratio() float64 { return median(r.Btmm) / median(r.WireGuard) }

// BidirRatio is Ratio with both directions at once.
func (r Result) BidirRatio() float64 { return median(r.BtmmBidir) / median(r.WireGuardBidir) }

// innerMTU is btmm's TUN MTU (tun.DefaultMTU), given to WireGuard too.
const innerMTU = 1432

// wgAddr is the tunnel address of host ("hostA", "hostB") in WireGuard.
func wgAddr(host string) netip.Addr {
	if host == "hostA" {
		return netip.MustParseAddr("fd77:6700::a")
	}
	return netip.MustParseAddr("fd77:6700::b")
}

// Run builds a lab, runs both tunnels in it and measures them in turns.
func Run(ctx context.Context, o Options) (res Result, err error) {
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Runs == 0 {
		o.Runs = 3
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := system.Check(o.Bin); err != nil {
		return res, err
	}
	wgBin := filepath.Join(o.Bin, "wireguard-go")
	if _, err := os.Stat(wgBin); err != nil {
		return res, fmt.Errorf("%s is missing: run make wireguard-go first", wgBin)
	}
	iperf := lab.LookPath("iperf3")
	if iperf == "" {
		return res, errors.New("iperf3 is missing (Debian package iperf3)")
	}
	l, err := lab.New(o.Logf, lab.Options{})
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, l.Close()) }()
	sys, err := system.New(l, o.Bin)
	if err != nil {
		return res, err
	}
	defer sys.Close()

	// btmm: the server and two clients; the tunnel comes up on the first
	// packet.
	if _, err := sys.StartServer(); err != nil {
		return res, err
	}
	laptop, err := sys.StartClient("hostA", "laptop")
	if err != nil {
		return res, err
	}
	desktop, err := sys.StartClient("hostB", "desktop")
	if err != nil {
		return res, err
	}
	st, err := laptop.WaitStatus(ctx, 15*time.Second, func(st daemon.Status) bool { return system.PeerULA(st, "desktop").IsValid() })
	if err != nil {
		return res, fmt.Errorf("the laptop does not see the desktop: %w\n%s", err, laptop.Out)
	}
	btmmDst := system.PeerULA(st, "desktop")
	if err := waitPing(ctx, l, "hostA", btmmDst); err != nil {
		return res, fmt.Errorf("btmm tunnel: %w\nlaptop:\n%s\ndesktop:\n%s", err, laptop.Out, desktop.Out)
	}

	// wireguard-go: the same two namespaces, the desktop's port mapped.
	wg, err := startWireGuard(ctx, sys, wgBin, o.Logf)
	if err != nil {
		return res, err
	}
	defer wg.stop()
	if err := waitPing(ctx, l, "hostA", wgAddr("hostB")); err != nil {
		return res, fmt.Errorf("wireguard-go tunnel: %w\n%s", err, wg.out())
	}

	if _, err := sys.Start("hostB", iperf, "--server"); err != nil {
		return res, err
	}
	if err := waitTCP(ctx, l, "hostB", 5201); err != nil {
		return res, fmt.Errorf("iperf3 server: %w", err)
	}

	fmt.Fprintf(o.Out, "TCP throughput, laptop (home A, behind NAT) -> desktop (home B, behind NAT), iperf3 %v per run, inner MTU %d;\n"+
		"\"both ways\": iperf3 --bidir, the two directions' throughput added\n", o.Duration, innerMTU)
	// btmm runs with the suite it picks on this CPU, with WireGuard's
	// cipher (ChaCha20-Poly1305: the laptop restarted with esp_suites set;
	// it initiates, so the desktop takes what it offers), and, given a
	// baseline, both hosts restarted on the older binary.
	current := filepath.Join(o.Bin, "btmm-client")
	laptopBin, laptopSuites, desktopBin, desktopMode := current, "", current, ""
	use := func(bin, suites, mode string) error {
		if bin == laptopBin && suites == laptopSuites && bin == desktopBin && mode == desktopMode {
			return nil
		}
		if bin != desktopBin || mode != desktopMode {
			desktop.Stop()
			var extra []string
			if mode == "userspace" {
				// The iperf3 server listens on every address of hostB,
				// 127.0.0.1 among them, where the forward leads.
				extra = []string{"--userspace", "--forward", "5201"}
			}
			if desktop, err = sys.StartClientBinary(bin, "hostB", "desktop", extra...); err != nil {
				return err
			}
			desktopBin = ""
			// An older build drew a new ULA on every start: ask the desktop.
			st, err := desktop.WaitStatus(ctx, 15*time.Second, func(st daemon.Status) bool { return st.ULA != "" })
			if err != nil {
				return fmt.Errorf("the restarted desktop: %w\n%s", err, desktop.Out)
			}
			if btmmDst, err = netip.ParseAddr(st.ULA); err != nil {
				return fmt.Errorf("the restarted desktop's address: %w", err)
			}
		}
		laptop.Stop()
		var extra []string
		if suites != "" {
			extra = []string{"--set", "esp_suites=" + suites}
		}
		if laptop, err = sys.StartClientBinary(bin, "hostA", "laptop", extra...); err != nil {
			return err
		}
		laptopBin, laptopSuites, desktopBin, desktopMode = bin, suites, bin, mode
		if st, err := laptop.WaitStatus(ctx, 15*time.Second, func(st daemon.Status) bool { return system.PeerULA(st, "desktop") == btmmDst }); err != nil {
			return fmt.Errorf("the restarted laptop does not see the desktop at %v (it sees %v): %w\n%s", btmmDst, system.PeerULA(st, "desktop"), err, laptop.Out)
		}
		return waitPing(ctx, l, "hostA", btmmDst)
	}
	// rx is what each end of a tunnel has received: the desktop, the laptop.
	btmmRxBoth := func() (uint64, uint64, error) {
		d, err := btmmRx(desktop)
		if err != nil {
			return 0, 0, err
		}
		a, err := btmmRx(laptop)
		return d, a, err
	}
	wgRxBoth := func() (uint64, uint64, error) {
		d, err := wgRx(wg.socks[1])
		if err != nil {
			return 0, 0, err
		}
		a, err := wgRx(wg.socks[0])
		return d, a, err
	}
	type contender struct {
		name, bin, suites string // bin, suites: the btmm-client and its esp_suites
		mode              string // the desktop's tunnel_mode: "" (TUN) or "userspace"
		dst               func() netip.Addr
		rx                func() (desktop, laptop uint64, err error)
		oneWay, bidir     *[]float64
	}
	btmmAddr := func() netip.Addr { return btmmDst }
	wgDst := func() netip.Addr { return wgAddr("hostB") }
	contenders := []contender{
		{"btmm", current, "", "", btmmAddr, btmmRxBoth, &res.Btmm, &res.BtmmBidir},
		{"wireguard-go", "", "", "", wgDst, wgRxBoth, &res.WireGuard, &res.WireGuardBidir},
		{"btmm-chacha", current, "ChaCha20-Poly1305", "", btmmAddr, btmmRxBoth, &res.BtmmChaCha, &res.BtmmChaChaBidir},
		{"btmm-userspace", current, "", "userspace", btmmAddr, btmmRxBoth, &res.Userspace, &res.UserspaceBidir},
	}
	if o.Baseline != "" {
		contenders = append(contenders, contender{"btmm-baseline", o.Baseline, "", "", btmmAddr, btmmRxBoth, &res.Baseline, &res.BaselineBidir})
	}
	suiteUsed := map[string]string{}
	for i := range o.Runs {
		for _, c := range contenders {
			if c.bin != "" {
				if err := use(c.bin, c.suites, c.mode); err != nil {
					return res, fmt.Errorf("%s: %w", c.name, err)
				}
			}
			for _, bidir := range []bool{false, true} {
				d0, a0, err := c.rx()
				if err != nil {
					return res, err
				}
				r, err := iperf3(ctx, l, iperf, c.dst(), o.Duration, bidir)
				if err != nil {
					return res, fmt.Errorf("%s run %d: %w", c.name, i+1, err)
				}
				d1, a1, err := c.rx()
				if err != nil {
					return res, err
				}
				// Proof that the streams went through this tunnel.
				if d1-d0 < r.forward || a1-a0 < r.reverse {
					return res, fmt.Errorf("%s run %d: iperf3 received %d+%d bytes but the tunnel only %d+%d",
						c.name, i+1, r.forward, r.reverse, d1-d0, a1-a0)
				}
				runs, label := c.oneWay, "one way"
				if bidir {
					runs, label = c.bidir, "both ways"
				}
				*runs = append(*runs, r.bps)
				fmt.Fprintf(o.Out, "  run %d %-14s %-9s %8.0f Mbit/s\n", i+1, c.name, label, r.bps/1e6)
			}
			if c.bin != "" {
				suiteUsed[c.name] = suiteOf(desktop)
			}
		}
	}
	medians := []struct {
		label         string
		oneWay, bidir []float64
	}{
		{"btmm (ESP, " + suiteUsed["btmm"] + ")", res.Btmm, res.BtmmBidir},
		{"btmm (ESP, " + suiteUsed["btmm-chacha"] + ")", res.BtmmChaCha, res.BtmmChaChaBidir},
		{"wireguard-go " + wgVersion(wgBin), res.WireGuard, res.WireGuardBidir},
		{"btmm, desktop in userspace mode", res.Userspace, res.UserspaceBidir},
	}
	if o.Baseline != "" {
		medians = append(medians, struct {
			label         string
			oneWay, bidir []float64
		}{"baseline " + filepath.Base(o.Baseline) + " (ESP, " + suiteUsed["btmm-baseline"] + ")", res.Baseline, res.BaselineBidir})
	}
	for _, m := range medians {
		fmt.Fprintf(o.Out, "%-40s median one way %6.0f Mbit/s, both ways %6.0f Mbit/s\n", m.label, median(m.oneWay)/1e6, median(m.bidir)/1e6)
	}
	fmt.Fprintf(o.Out, "memory after the runs (RSS): btmm-client %s (laptop) %s (desktop), wireguard-go %s %s\n",
		rss(laptop.PID()), rss(desktop.PID()), rss(wg.procs[0].PID()), rss(wg.procs[1].PID()))
	fmt.Fprintf(o.Out, "ratio with the same cipher (ChaCha20-Poly1305) %.2f, both ways %.2f\n",
		median(res.BtmmChaCha)/median(res.WireGuard), median(res.BtmmChaChaBidir)/median(res.WireGuardBidir))
	if o.Baseline != "" {
		fmt.Fprintf(o.Out, "baseline ratio %.2f, both ways %.2f\n",
			median(res.Baseline)/median(res.WireGuard), median(res.BaselineBidir)/median(res.WireGuardBidir))
	}
	fmt.Fprintf(o.Out, "userspace mode / TUN mode %.2f, both ways %.2f\n",
		median(res.Userspace)/median(res.Btmm), median(res.UserspaceBidir)/median(res.BtmmBidir))
	fmt.Fprintf(o.Out, "ratio %.2f\n", res.Ratio())
	fmt.Fprintf(o.Out, "ratio both ways %.2f\n", res.BidirRatio())
	return res, nil
}

// rss is a process's resident memory, from /proc/PID/status.
func rss(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int
			fmt.Sscan(v, &kb)
			return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
		}
	}
	return "?"
}

func suiteOf(c *system.Client) string {
	st, err := daemon.Fetch(c.Socket)
	if err != nil {
		return "?"
	}
	for _, t := range st.Tunnels {
		if t.Suite != "" {
			return t.Suite
		}
	}
	return "?"
}

func wgVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return "?"
	}
	return f[1]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// btmmRx is the inner octets c's tunnel has received from its peers.
func btmmRx(c *system.Client) (uint64, error) {
	st, err := daemon.Fetch(c.Socket)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, t := range st.Tunnels {
		n += t.RxBytes
	}
	return n, nil
}

// wgRx is the octets a wireguard-go device has received from its peers
// (UAPI "get": rx_bytes per peer).
func wgRx(sock string) (uint64, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "get=1\n\n"); err != nil {
		return 0, err
	}
	var n uint64
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "rx_bytes="); ok {
			var x uint64
			fmt.Sscan(v, &x)
			n += x
		}
		if strings.HasPrefix(sc.Text(), "errno=") {
			return n, nil
		}
	}
	return 0, fmt.Errorf("wireguard-go get: no answer: %v", sc.Err())
}

// iperfResult is one iperf3 run: the bits per second of payload received
// (both directions added with --bidir) and the octets each end received.
type iperfResult struct {
	bps              float64
	forward, reverse uint64 // received by the desktop, by the laptop
}

// iperf3 runs one client from hostA to dst, one way or both ways at once.
func iperf3(ctx context.Context, l *lab.Lab, iperf string, dst netip.Addr, d time.Duration, bidir bool) (iperfResult, error) {
	secs := fmt.Sprint(int(d.Round(time.Second) / time.Second))
	args := []string{"--client", dst.String(), "--time", secs, "--omit", "1", "--json"}
	if bidir {
		args = append(args, "--bidir")
	}
	cmd := l.Exec("hostA", iperf, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	type sum struct {
		Bytes         uint64  `json:"bytes"`
		BitsPerSecond float64 `json:"bits_per_second"`
	}
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumReceived        sum `json:"sum_received"`
			SumReceivedReverse sum `json:"sum_received_bidir_reverse"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		return iperfResult{}, fmt.Errorf("iperf3: %v (%v)\n%s", err, jerr, out)
	}
	if r.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3: %s", r.Error)
	}
	if err != nil {
		return iperfResult{}, fmt.Errorf("iperf3: %w", err)
	}
	fwd, rev := r.End.SumReceived, r.End.SumReceivedReverse
	if fwd.BitsPerSecond <= 0 || bidir && rev.BitsPerSecond <= 0 {
		return iperfResult{}, errors.New("iperf3: nothing received")
	}
	return iperfResult{bps: fwd.BitsPerSecond + rev.BitsPerSecond, forward: fwd.Bytes, reverse: rev.Bytes}, ctx.Err()
}

// waitPing pings dst from ns until it answers (10 s at most).
func waitPing(ctx context.Context, l *lab.Lab, ns string, dst netip.Addr) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := l.Exec(ns, "ping", "-6", "-c", "1", "-W", "1", dst.String()).CombinedOutput()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("ping %v from %s: %v\n%s", dst, ns, err, out)
		}
		time.Sleep(50 * time.Millisecond) // no route yet fails at once
	}
}

func waitTCP(ctx context.Context, l *lab.Lab, ns string, port int) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := l.Dial(ns, "tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wireGuard is a wireguard-go process in hostA and one in hostB.
type wireGuard struct {
	procs []*system.Proc
	socks []string // their UAPI sockets
}

func (w *wireGuard) out() string {
	var b strings.Builder
	for _, p := range w.procs {
		b.WriteString(p.Out.String())
	}
	return b.String()
}

func (w *wireGuard) stop() {
	for _, p := range w.procs {
		p.Stop()
	}
	for _, s := range w.socks {
		os.Remove(s) // left behind only if it was killed
	}
}

// startWireGuard runs wireguard-go in hostA and hostB: interfaces with
// names of this lab's own (the UAPI sockets are in the machine-wide
// /var/run/wireguard), keys made here, the desktop's port mapped by
// NAT-PMP and given to the laptop as its peer's endpoint.
func startWireGuard(ctx context.Context, sys *system.System, bin string, logf lab.Logf) (w *wireGuard, err error) {
	l := sys.Lab
	w = &wireGuard{}
	defer func() {
		if err != nil {
			w.stop()
		}
	}()
	tag := strings.TrimSuffix(strings.TrimPrefix(l.Prefix, lab.Root), "-")
	names := map[string]string{"hostA": "wg" + tag + "a", "hostB": "wg" + tag + "b"}
	keys := map[string]*ecdh.PrivateKey{}
	for _, h := range []string{"hostA", "hostB"} {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return w, err
		}
		keys[h] = k
		p, err := sys.Start(h, bin, "-f", names[h])
		if err != nil {
			return w, err
		}
		w.procs = append(w.procs, p)
		w.socks = append(w.socks, "/var/run/wireguard/"+names[h]+".sock")
	}
	const port = 51820
	var mapped uint16
	if err := l.Go("hostB", func() error {
		r, err := natpmp.NewClientWithTimeout(l.Gateway("hostB").AsSlice(), 2*time.Second).AddPortMapping("udp", port, port, 3600)
		if err != nil {
			return err
		}
		mapped = r.MappedExternalPort
		return nil
	}); err != nil {
		return w, fmt.Errorf("NAT-PMP mapping for wireguard-go: %w", err)
	}
	endpoint := netip.AddrPortFrom(l.WAN("routerB"), mapped)
	logf("wireguard-go: desktop reachable at %v", endpoint)

	pub := func(h string) string { return hex.EncodeToString(keys[h].PublicKey().Bytes()) }
	conf := map[string]string{
		"hostB": fmt.Sprintf("private_key=%s\nlisten_port=%d\nreplace_peers=true\npublic_key=%s\nallowed_ip=%s/128\n",
			hex.EncodeToString(keys["hostB"].Bytes()), port, pub("hostA"), wgAddr("hostA")),
		"hostA": fmt.Sprintf("private_key=%s\nlisten_port=%d\nreplace_peers=true\npublic_key=%s\nendpoint=%s\nallowed_ip=%s/128\npersistent_keepalive_interval=25\n",
			hex.EncodeToString(keys["hostA"].Bytes()), port+1, pub("hostB"), endpoint, wgAddr("hostB")),
	}
	for i, h := range []string{"hostB", "hostA"} {
		sock := w.socks[1-i]
		if err := uapiSet(ctx, sock, conf[h]); err != nil {
			return w, fmt.Errorf("configuring wireguard-go in %s: %w\n%s", h, err, w.out())
		}
		dev := names[h]
		for _, args := range [][]string{
			{"link", "set", dev, "mtu", fmt.Sprint(innerMTU), "up"},
			{"-6", "addr", "add", wgAddr(h).String() + "/64", "dev", dev, "nodad"},
		} {
			if out, err := l.Exec(h, "ip", args...).CombinedOutput(); err != nil {
				return w, fmt.Errorf("ip %s in %s: %v: %s", strings.Join(args, " "), h, err, out)
			}
		}
	}
	return w, nil
}

// uapiSet sends one "set" operation to a wireguard-go UAPI socket (the
// cross-platform userspace interface, wireguard.com/xplatform), waiting
// for the socket to appear first.
func uapiSet(ctx context.Context, sock, conf string) error {
	deadline := time.Now().Add(5 * time.Second)
	var c net.Conn
	for {
		var err error
		c, err = net.Dial("unix", sock)
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "set=1\n"+conf+"\n"); err != nil {
		return err
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "errno="); ok {
			if v != "0" {
				return fmt.Errorf("errno %s", v)
			}
			return nil
		}
	}
	return fmt.Errorf("no answer: %v", sc.Err())
}
