package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLab builds one lab (with the double NAT) and walks through what the
// other tests rely on, in order: masquerade, NAT-PMP mapping, no hairpin,
// a new WAN address and its announcements, NAT restart and reboot, the
// double NAT, moving a host, and Close.
func TestLab(t *testing.T) {
	l := Start(t, Options{DoubleNAT: true}, "natpmpc", "natpmpc", "ping", "iputils-ping")
	t.Log("\n" + l.Topology())
	server := l.Addr("server")
	echo := startEcho(t, l)
	mapped := netip.AddrPortFrom(l.WAN("routerA"), 4500)

	t.Run("masquerade", func(t *testing.T) {
		if out, err := l.Exec("hostA", "ping", "-c", "1", "-W", "2", server.String()).CombinedOutput(); err != nil {
			t.Fatalf("hostA cannot ping the server: %v\n%s", err, out)
		}
		for _, h := range []string{"hostA", "hostB"} {
			router := "router" + h[len(h)-1:]
			if got := echoFrom(t, l, h, echo).Addr(); got != l.WAN(router) {
				t.Errorf("the server sees %s as %v, want %s's WAN %v", h, got, router, l.WAN(router))
			}
		}
		if out, err := l.Exec("hostA", "ping", "-c", "1", "-W", "1", "8.8.8.8").CombinedOutput(); err == nil {
			t.Errorf("the lab's internet reaches 8.8.8.8; it must be closed:\n%s", out)
		}
	})

	ann := listenAnnouncements(t, l, "hostA")

	t.Run("natpmp", func(t *testing.T) {
		pm := natpmpc(t, l, "hostA")
		if pm.public != l.WAN("routerA") {
			t.Fatalf("natpmpc in hostA: public address %v, want %v\n%s", pm.public, l.WAN("routerA"), pm.out)
		}
		pm = natpmpc(t, l, "hostA", "-a", "4500", "4500", "udp", "3600")
		if pm.mapped != 4500 || pm.lifetime != 3600 {
			t.Fatalf("natpmpc -a 4500 4500 udp 3600: mapped %d for %d s\n%s", pm.mapped, pm.lifetime, pm.out)
		}
		got := sendMapped(t, l, mapped, "through the mapping")
		if !got.ok || got.from.Addr() != server {
			t.Fatalf("datagram to %v: got %+v, want it on hostA:4500 from %v", mapped, got, server)
		}
	})

	t.Run("no hairpin", func(t *testing.T) {
		rx := listenUDP(t, l, "hostA", "0.0.0.0:4501")
		c, err := l.Dial("hostA", "udp4", mapped.String(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("hairpin"))
		if d := rx.recv(300 * time.Millisecond); d.ok {
			t.Errorf("hostA reached its own public address and port: %+v", d)
		}
	})

	t.Run("SetWAN", func(t *testing.T) {
		old := l.WAN("routerA")
		before := natpmpc(t, l, "hostA").epoch
		ann.drain()
		next := old.Next()
		t0 := time.Now()
		if err := l.SetWAN("routerA", next); err != nil {
			t.Fatal(err)
		}
		// Both kinds, however slowly miniupnpd is scheduled on a busy
		// machine; a second more for any repeat.
		both := func(got []announcement) bool {
			var pmp, pcp bool
			for _, a := range got {
				pmp = pmp || a.version == 0 && a.op == 128
				pcp = pcp || a.version == 2 && a.op == 0x80
			}
			return pmp && pcp
		}
		got := ann.collectUntil(10*time.Second, both)
		got = append(got, ann.collect(time.Second)...)
		for _, a := range got {
			t.Logf("announcement %v after SetWAN: %s", a.at.Sub(t0).Round(time.Millisecond), a)
		}
		var pmp, pcp int
		for _, a := range got {
			switch {
			case a.version == 0 && a.op == 128:
				pmp++
				if a.addr != next {
					t.Errorf("NAT-PMP announcement carries %v, want %v", a.addr, next)
				}
			case a.version == 2 && a.op == 0x80:
				pcp++
			}
		}
		if pmp == 0 || pcp == 0 {
			t.Errorf("after SetWAN hostA heard %d NAT-PMP announcements and %d PCP ANNOUNCEs; want both", pmp, pcp)
		}
		pm := natpmpc(t, l, "hostA")
		if pm.public != next {
			t.Errorf("natpmpc after SetWAN: public %v, want %v", pm.public, next)
		}
		t.Logf("epoch before SetWAN %d, after %d", before, pm.epoch)
		if from := echoFrom(t, l, "hostA", echo); from.Addr() != next {
			t.Errorf("after SetWAN the server sees hostA as %v, want %v", from, next)
		}
		// miniupnpd's DNAT rules do not name the WAN address: the mapping
		// works at the new address too.
		mapped = netip.AddrPortFrom(next, 4500)
		if got := sendMapped(t, l, mapped, "to the new address"); !got.ok {
			t.Errorf("the mapping does not forward at the new address %v", mapped)
		}
	})

	t.Run("RestartNAT", func(t *testing.T) {
		before := waitEpoch(t, l, "hostA", 2)
		ann.drain()
		t0 := time.Now()
		if err := l.RestartNAT("routerA", false); err != nil {
			t.Fatal(err)
		}
		restart := time.Since(t0)
		if restart > time.Second {
			t.Logf("slow restart %v:\n%s", restart, l.NATLog("routerA"))
		}
		pm := natpmpc(t, l, "hostA")
		if pm.epoch >= before {
			t.Errorf("epoch after restart %d, before %d: want it smaller", pm.epoch, before)
		}
		for _, a := range ann.collect(500 * time.Millisecond) {
			t.Logf("announcement %v after the restart began (restart took %v): %s", a.at.Sub(t0).Round(time.Millisecond), restart.Round(time.Millisecond), a)
		}
		if got := sendMapped(t, l, mapped, "after restart"); !got.ok {
			t.Errorf("the mapping did not survive a restart (lease file %s)", l.LeaseFile("routerA"))
		}
		t.Logf("rules after restart: %d in prerouting_miniupnpd", len(natRules(t, l, "routerA")))

		before = waitEpoch(t, l, "hostA", 1)
		if err := l.RestartNAT("routerA", true); err != nil {
			t.Fatal(err)
		}
		if pm := natpmpc(t, l, "hostA"); pm.epoch >= before {
			t.Errorf("epoch after reboot %d, before %d: want it smaller", pm.epoch, before)
		}
		if got := sendMapped(t, l, mapped, "after reboot"); got.ok {
			t.Errorf("the mapping survived a reboot: %+v", got)
		}
		if r := natRules(t, l, "routerA"); len(r) > 0 {
			t.Errorf("rules after reboot: %q", r)
		}
	})

	t.Run("double NAT", func(t *testing.T) {
		pm := natpmpc(t, l, "hostC")
		if !strings.Contains(pm.out, "network failure") || pm.public.IsValid() {
			t.Errorf("natpmpc behind two NATs: want result 3 (network failure)\n%s", pm.out)
		}
		if from := echoFrom(t, l, "hostC", echo); from.Addr() != l.WAN("isp") {
			t.Errorf("the server sees hostC as %v, want the carrier's %v", from, l.WAN("isp"))
		}
	})

	t.Run("Move", func(t *testing.T) {
		// A stand-in for the client's TUN device: it must not notice.
		if err := l.ipBatch("hostA", []string{"tuntap add dev tun0 mode tun", "link set dev tun0 up", "addr add fd00:b7::1/64 dev tun0"}); err != nil {
			t.Fatal(err)
		}
		home := l.Addr("hostA")
		t0 := time.Now()
		if err := l.Move("hostA", "cafe"); err != nil {
			t.Fatal(err)
		}
		t.Logf("Move to the cafe took %v", time.Since(t0).Round(time.Millisecond))
		a := l.Addr("hostA")
		if a == home || !netip.MustParsePrefix("23.3.3.0/24").Contains(a) || l.Where("hostA") != "cafe" {
			t.Fatalf("hostA in the cafe has %v (was %v), on %s", a, home, l.Where("hostA"))
		}
		if from := echoFrom(t, l, "hostA", echo); from.Addr() != a {
			t.Errorf("from the cafe the server sees hostA as %v, want %v (no NAT)", from, a)
		}
		pm := natpmpc(t, l, "hostA")
		if pm.public.IsValid() || pm.mapped != 0 {
			t.Errorf("NAT-PMP answered in the cafe:\n%s", pm.out)
		}
		t.Logf("natpmpc in the cafe (%v): %s", pm.took.Round(time.Millisecond), lastLine(pm.out))
		out, _ := l.Exec("hostA", tool("ip"), "-br", "addr", "show", "dev", "tun0").CombinedOutput()
		if !bytes.Contains(out, []byte("fd00:b7::1/64")) {
			t.Errorf("tun0 after Move: %s", out)
		}
		if err := l.Move("hostA", "homeA"); err != nil {
			t.Fatal(err)
		}
		if l.Addr("hostA") != home {
			t.Errorf("back home hostA has %v, want %v", l.Addr("hostA"), home)
		}
		if from := echoFrom(t, l, "hostA", echo); from.Addr() != l.WAN("routerA") {
			t.Errorf("back home the server sees hostA as %v, want %v", from, l.WAN("routerA"))
		}
	})

	t.Run("Move under a TCP stream", func(t *testing.T) {
		// Without a tunnel a stream cannot follow the host to the cafe,
		// but Move must leave it alone: back home within TCP's patience,
		// the stream goes on through the same NAT entry.
		ln, err := l.Listen("server", "tcp4", netip.AddrPortFrom(server, 7001).String())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		received := make(chan int, 1000)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			buf := make([]byte, 4096)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				received <- n
			}
		}()
		c, err := l.Dial("hostA", "tcp4", netip.AddrPortFrom(server, 7001).String(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			chunk := make([]byte, 512)
			for {
				if _, err := c.Write(chunk); err != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		waitBytes := func(what string) {
			t.Helper()
			timeout := time.After(5 * time.Second)
			for got := 0; got < 8192; {
				select {
				case n := <-received:
					got += n
				case <-timeout:
					t.Fatalf("the stream stalls %s", what)
				}
			}
		}
		waitBytes("before the move")
		if err := l.Move("hostA", "cafe"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		for len(received) > 0 {
			<-received
		}
		time.Sleep(300 * time.Millisecond)
		away := 0
		for len(received) > 0 {
			away += <-received
		}
		if away > 0 {
			t.Errorf("%d bytes reached the server from hostA's home address while it was in the cafe", away)
		}
		t0 := time.Now()
		if err := l.Move("hostA", "homeA"); err != nil {
			t.Fatal(err)
		}
		waitBytes("after coming home")
		t.Logf("the stream went on %v after Move home began", time.Since(t0).Round(time.Millisecond))
	})

	t.Run("Close", func(t *testing.T) {
		t0 := time.Now()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("Close took %v", time.Since(t0).Round(time.Millisecond))
		assertGone(t, l)
		if err := l.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// TestCleanup leaves a lab as a crashed test would (a process still
// running in it) and removes it with Cleanup.
func TestCleanup(t *testing.T) {
	l := Start(t, Options{Hosts: map[string]string{"laptop": "cafe"}})
	if l.Addr("laptop") != netip.MustParseAddr("23.3.3.10") {
		t.Errorf("laptop in the cafe: %v", l.Addr("laptop"))
	}
	sleeper := l.Exec("laptop", "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	go sleeper.Wait()
	if err := l.SetResolver("laptop", []netip.Addr{l.Addr("server")}); err != nil {
		t.Fatal(err)
	}
	for !slices.Contains(pidsIn(l.NS("laptop")), sleeper.Process.Pid) {
		time.Sleep(5 * time.Millisecond)
	}
	o, err := Open(l.Prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Topology() != l.Topology() {
		t.Errorf("Open describes another lab:\n%s\nwant\n%s", o.Topology(), l.Topology())
	}
	// A second lab with the same prefix must be refused, not merged.
	if l2, err := New(nil, Options{Prefix: l.Prefix}); err == nil {
		l2.Close()
		t.Fatal("New made a second lab with a prefix in use")
	}
	if err := Cleanup(l.Prefix); err != nil {
		t.Fatal(err)
	}
	assertGone(t, l)
	if alive(sleeper.Process.Pid) {
		t.Errorf("Cleanup left a process of the lab running (pid %d)", sleeper.Process.Pid)
	}
	if err := Cleanup("btmm"); err == nil {
		t.Error("Cleanup accepts a prefix outside the labs'")
	}
}

// TestPartial makes New fail half way and checks it removed what it made.
func TestPartial(t *testing.T) {
	Require(t)
	var prefix string
	buildHook = func(l *Lab, stage string) error {
		prefix = l.Prefix
		if ns, _ := namespaces(prefix); len(ns) != len(l.Namespaces) {
			t.Errorf("namespaces before %s: %v", stage, ns)
		}
		return errors.New("failing on purpose before " + stage)
	}
	defer func() { buildHook = nil }()
	l, err := New(t.Logf, Options{})
	if err == nil || l != nil {
		t.Fatalf("New = %v, %v; want it to fail", l, err)
	}
	t.Log(err)
	assertGone(t, &Lab{Prefix: prefix, Dir: claimDir(prefix)})
}

// TestPlan checks the address plan and the checks on options (no root).
func TestPlan(t *testing.T) {
	l, err := plan("btmmlabtest-", "/nonexistent", Options{DoubleNAT: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"routerA": "23.1.1.2/24", "routerB": "23.2.2.2/24", "cafe": "23.3.0.2/24",
		"isp": "23.4.4.2/24", "routerC": "100.64.0.2/24",
	}
	for r, w := range want {
		if got := l.Routers[r].WAN.String(); got != w {
			t.Errorf("%s WAN %s, want %s", r, got, w)
		}
	}
	if got := l.Hosts["hostC"].Addr.String(); got != "192.168.1.12" {
		t.Errorf("hostC %s", got)
	}
	for _, bad := range []map[string]string{{"x": "mars"}, {"routerA": "homeA"}, {"a-b": "homeA"}, {"averyveryverylongname": "cafe"}} {
		if _, err := plan("btmmlabtest-", "/nonexistent", Options{Hosts: bad}); err == nil {
			t.Errorf("plan accepts hosts %v", bad)
		}
	}
	if _, err := New(nil, Options{Prefix: "other-"}); err == nil {
		t.Error("New accepts a prefix outside the labs'")
	}
}

func assertGone(t *testing.T, l *Lab) {
	t.Helper()
	out, err := exec.Command(tool("ip"), "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte(l.Prefix)) {
		t.Errorf("namespaces left:\n%s", out)
	}
	if _, err := os.Stat(l.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there (%v)", l.Dir, err)
	}
	if left, _ := filepath.Glob(filepath.Join(etcNetnsDir, l.Prefix+"*")); len(left) > 0 {
		t.Errorf("resolver configurations left: %v", left)
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		cmdline, _ := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if bytes.Contains(cmdline, []byte("miniupnpd")) && bytes.Contains(cmdline, []byte(l.Dir)) && alive(atoi(p.Name())) {
			t.Errorf("miniupnpd of the lab still runs: pid %s %q", p.Name(), cmdline)
		}
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// startEcho serves UDP on the server's :7000 and answers every datagram
// with the source address it came from.
func startEcho(t *testing.T, l *Lab) netip.AddrPort {
	t.Helper()
	return startEchoAt(t, l, l.Addr("server"))
}

// startEchoAt is startEcho on one of the server's addresses (IPv4 or IPv6).
func startEchoAt(t *testing.T, l *Lab, a netip.Addr) netip.AddrPort {
	t.Helper()
	addr := netip.AddrPortFrom(a, 7000)
	c, err := l.ListenPacket("server", udp(a), addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo([]byte(from.String()), from)
		}
	}()
	return addr
}

// echoFrom asks the echo from a namespace and returns the source address
// that the server saw.
func echoFrom(t *testing.T, l *Lab, ns string, echo netip.AddrPort) netip.AddrPort {
	t.Helper()
	c, err := l.Dial(ns, udp(echo.Addr()), echo.String(), time.Second)
	if err != nil {
		t.Fatalf("%s: %v", ns, err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	for range 3 {
		c.Write([]byte("who am I"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err == nil {
			return netip.MustParseAddrPort(string(buf[:n]))
		}
	}
	t.Fatalf("%s gets no answer from the echo at %v", ns, echo)
	return netip.AddrPort{}
}

type datagram struct {
	ok   bool
	from netip.AddrPort
	data string
}

type udpRx struct {
	c net.PacketConn
}

// udp is the network of a's IP version: "udp4" or "udp6".
func udp(a netip.Addr) string {
	if a.Is4() {
		return "udp4"
	}
	return "udp6"
}

func listenUDP(t *testing.T, l *Lab, ns, addr string) *udpRx {
	t.Helper()
	c, err := l.ListenPacket(ns, udp(netip.MustParseAddrPort(addr).Addr()), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpRx{c}
}

func (u *udpRx) recv(wait time.Duration) datagram {
	buf := make([]byte, 1500)
	u.c.SetReadDeadline(time.Now().Add(wait))
	n, from, err := u.c.ReadFrom(buf)
	if err != nil {
		return datagram{}
	}
	return datagram{ok: true, from: from.(*net.UDPAddr).AddrPort(), data: string(buf[:n])}
}

// sendMapped sends a datagram from the server (from a fixed source port,
// so that a stale conntrack entry would show) to a mapped public address
// and reports what a listener on hostA:4500 got.
func sendMapped(t *testing.T, l *Lab, to netip.AddrPort, what string) datagram {
	t.Helper()
	rx := listenUDP(t, l, "hostA", "0.0.0.0:4500")
	defer rx.c.Close()
	tx, err := l.ListenPacket("server", "udp4", netip.AddrPortFrom(l.Addr("server"), 4600).String())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	for range 2 {
		tx.WriteTo([]byte(what), net.UDPAddrFromAddrPort(to))
		if d := rx.recv(400 * time.Millisecond); d.ok {
			return d
		}
	}
	return datagram{}
}

// pmp is what natpmpc printed.
type pmp struct {
	out      string
	public   netip.Addr
	epoch    int
	mapped   int
	lifetime int
	took     time.Duration
}

var (
	rePublic = regexp.MustCompile(`Public IP address : (\S+)`)
	reEpoch  = regexp.MustCompile(`epoch = (\d+)`)
	reMapped = regexp.MustCompile(`Mapped public port (\d+) protocol \S+ to local port \d+ liftime (\d+)`)
)

// natpmpc runs Debian's natpmpc in a namespace (it asks its default
// gateway) and parses its output.
func natpmpc(t *testing.T, l *Lab, ns string, args ...string) pmp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := l.Exec(ns, "natpmpc", args...)
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	t0 := time.Now()
	out, _ := cmd.CombinedOutput()
	p := pmp{out: string(out), took: time.Since(t0)}
	if m := rePublic.FindStringSubmatch(p.out); m != nil {
		p.public, _ = netip.ParseAddr(m[1])
	}
	if m := reEpoch.FindAllStringSubmatch(p.out, -1); m != nil {
		p.epoch, _ = strconv.Atoi(m[len(m)-1][1])
	}
	if m := reMapped.FindStringSubmatch(p.out); m != nil {
		p.mapped, _ = strconv.Atoi(m[1])
		p.lifetime, _ = strconv.Atoi(m[2])
	}
	return p
}

// waitEpoch waits until the NAT-PMP epoch seen from ns is at least min.
func waitEpoch(t *testing.T, l *Lab, ns string, min int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := natpmpc(t, l, ns)
		if p.epoch >= min {
			return p.epoch
		}
		if time.Now().After(deadline) {
			t.Fatalf("epoch stays %d:\n%s", p.epoch, p.out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func natRules(t *testing.T, l *Lab, router string) []string {
	t.Helper()
	out, err := l.Exec(router, "nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var rules []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "dnat") {
			rules = append(rules, strings.TrimSpace(line))
		}
	}
	return rules
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// announcement is a datagram heard on 224.0.0.1:5350.
type announcement struct {
	at      time.Time
	from    netip.AddrPort
	raw     []byte
	version byte
	op      byte
	result  int
	epoch   uint32
	addr    netip.Addr // NAT-PMP only
}

func (a announcement) String() string {
	switch {
	case a.version == 0 && len(a.raw) >= 12:
		return fmt.Sprintf("NAT-PMP from %v: op %d result %d epoch %d address %v (%d bytes %x)", a.from, a.op, a.result, a.epoch, a.addr, len(a.raw), a.raw)
	case a.version == 2 && len(a.raw) >= 24:
		return fmt.Sprintf("PCP from %v: op %#x result %d epoch %d (%d bytes %x)", a.from, a.op, a.result, a.epoch, len(a.raw), a.raw)
	}
	return fmt.Sprintf("unknown from %v: %x", a.from, a.raw)
}

type announcements struct{ ch chan announcement }

// listenAnnouncements listens as a NAT-PMP client does: on
// 224.0.0.1:5350 with SO_REUSEADDR and SO_REUSEPORT.
func listenAnnouncements(t *testing.T, l *Lab, ns string) *announcements {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) {
			serr = errors.Join(
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1),
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1))
		})
		return serr
	}}
	var c net.PacketConn
	if err := l.Go(ns, func() (err error) {
		c, err = lc.ListenPacket(context.Background(), "udp4", "224.0.0.1:5350")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a := &announcements{ch: make(chan announcement, 64)}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			an := announcement{at: time.Now(), from: from.(*net.UDPAddr).AddrPort(), raw: bytes.Clone(buf[:n])}
			if n >= 2 {
				an.version, an.op = buf[0], buf[1]
			}
			switch {
			case an.version == 0 && n >= 12:
				an.result = int(binary.BigEndian.Uint16(buf[2:4]))
				an.epoch = binary.BigEndian.Uint32(buf[4:8])
				an.addr = netip.AddrFrom4([4]byte(buf[8:12]))
			case an.version == 2 && n >= 24:
				an.result = int(buf[3])
				an.epoch = binary.BigEndian.Uint32(buf[8:12])
			}
			select {
			case a.ch <- an:
			default:
			}
		}
	}()
	return a
}

func (a *announcements) drain() {
	for {
		select {
		case <-a.ch:
		default:
			return
		}
	}
}

// collect returns what arrives within d.
func (a *announcements) collect(d time.Duration) []announcement {
	return a.collectUntil(d, func([]announcement) bool { return false })
}

// collectUntil collects announcements until enough says they are enough,
// or for d at most.
func (a *announcements) collectUntil(d time.Duration, enough func([]announcement) bool) []announcement {
	var out []announcement
	timer := time.After(d)
	for {
		select {
		case an := <-a.ch:
			out = append(out, an)
			if enough(out) {
				return out
			}
		case <-timer:
			return out
		}
	}
}
