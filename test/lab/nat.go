package lab

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// proc is a miniupnpd that this process started.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has ended and been reaped
}

func (l *Lab) natFile(router, ext string) string {
	return filepath.Join(l.Dir, router+"."+ext)
}

// LeaseFile returns the path of a router's miniupnpd lease file.
func (l *Lab) LeaseFile(router string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.routerLocked(router); r != nil {
		return l.natFile(r.Name, "leases")
	}
	return ""
}

// NATLog returns what a router's miniupnpd has logged (every start).
func (l *Lab) NATLog(router string) string {
	l.mu.Lock()
	r := l.routerLocked(router)
	l.mu.Unlock()
	if r == nil {
		return ""
	}
	b, _ := os.ReadFile(l.natFile(r.Name, "log"))
	return string(b)
}

// miniupnpdConf is the configuration of a router's miniupnpd: NAT-PMP
// and PCP (one switch) and UPnP IGD as the router's Protocols say, on
// the LAN bridge only (UPnP: SSDP and HTTP on lan0, the HTTP port chosen
// by miniupnpd at each start, as on real routers); the epoch counts from
// the daemon's start (system_uptime=no), so a restart is a NAT reboot as
// clients see it; clients may map only to themselves (secure_mode) and
// only from the LAN.
func (l *Lab) miniupnpdConf(r *Router) string {
	var u [16]byte
	rand.Read(u[:])
	n := l.Networks[r.LAN]
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	// With IPv6, PCP also opens pinholes: a MAP for a host's global IPv6
	// address adds an accept rule to chain miniupnpd (miniupnpd 2.3.1,
	// nftables). NAT-PMP and UPnP IGD do nothing for IPv6 here.
	ipv6 := "ipv6_disable=yes"
	if r.WAN6.IsValid() {
		ipv6 = "ipv6_disable=no\next_ifname6=wan0"
	}
	return fmt.Sprintf(`# miniupnpd for %s%s (made by the btmm network lab): %v
ext_ifname=wan0
listening_ip=lan0
enable_natpmp=%s
enable_upnp=%s
http_port=0
%s
ext_perform_stun=no
secure_mode=yes
system_uptime=no
lease_file=%s
uuid=%x-%x-%x-%x-%x
clean_ruleset_interval=600
allow 1-65535 %s 1-65535
deny 0-65535 0.0.0.0/0 0-65535
`, l.Prefix, r.Name, r.Protocols, yes(r.Protocols.PCP || r.Protocols.NATPMP), yes(r.Protocols.UPnP), ipv6, l.natFile(r.Name, "leases"), u[0:4], u[4:6], u[6:8], u[8:10], u[10:16], n.Subnet)
}

// setProc records (or, with nil, forgets) a router's miniupnpd. mu is held.
func (l *Lab) setProc(router string, p *proc) {
	l.procsMu.Lock()
	defer l.procsMu.Unlock()
	if p == nil {
		delete(l.procs, router)
		return
	}
	l.procs[router] = p
}

// startNATLocked starts a router's miniupnpd in the foreground (-d, its
// log appended to ROUTER.log) in a session of its own, so that it
// outlives `btmm-lab up`, and waits until it listens for NAT-PMP and
// PCP, and for UPnP's HTTP, as far as it serves them.
func (l *Lab) startNATLocked(name string) error {
	r := l.Routers[name]
	conf := l.natFile(name, "conf")
	if err := os.WriteFile(conf, []byte(l.miniupnpdConf(r)), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	logPath := l.natFile(name, "log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer logf.Close()
	st, _ := logf.Stat()
	from := st.Size()
	r.Started++
	fmt.Fprintf(logf, "=== btmm lab: start %d of miniupnpd in %s at %s\n", r.Started, l.NS(name), time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(tool("ip"), "netns", "exec", l.NS(name), tool("miniupnpd"), "-d", "-f", conf, "-P", l.natFile(name, "pid"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: starting miniupnpd in %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	l.setProc(name, p)
	r.PID = cmd.Process.Pid // `ip netns exec` execs miniupnpd: the same pid
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if int64(len(b)) > from {
			pmp := !(r.Protocols.PCP || r.Protocols.NATPMP) || bytes.Contains(b[from:], []byte("Listening for NAT-PMP"))
			upnp := !r.Protocols.UPnP || bytes.Contains(b[from:], []byte("HTTP listening on port"))
			if pmp && upnp {
				return nil
			}
		}
		select {
		case <-p.done:
			l.setProc(name, nil)
			r.PID = 0
			return fmt.Errorf("lab: miniupnpd in %s ended at once: %s", name, tail(b[min(from, int64(len(b))):]))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: miniupnpd in %s does not listen after 5 s: %s", name, tail(b[min(from, int64(len(b))):]))
		}
	}
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// stopNATLocked ends a router's miniupnpd (SIGTERM, SIGKILL after three
// seconds) and waits for it. miniupnpd leaves its nftables rules and its
// lease file behind.
func (l *Lab) stopNATLocked(name string) error {
	r := l.Routers[name]
	p := l.procs[name]
	delete(l.procs, name)
	defer os.Remove(l.natFile(name, "pid"))
	switch {
	case p != nil:
		// miniupnpd checks its quit flag only at the top of its main
		// loop, before select(): a SIGTERM that arrives while it is
		// still busy with a request is noticed only when select times
		// out (minutes). So say it again until it listens.
		deadline := time.After(3 * time.Second)
	wait:
		for {
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
				break wait
			case <-deadline:
				p.cmd.Process.Kill()
				<-p.done
				break wait
			case <-time.After(100 * time.Millisecond):
			}
		}
	case r != nil && r.PID > 0 && alive(r.PID) && l.pidIsNAT(name, r.PID):
		// Started by another process (a lab from Open).
		killAll([]int{r.PID}, 3*time.Second)
	}
	if r != nil {
		r.PID = 0
	}
	return nil
}

// pidIsNAT reports whether pid is a miniupnpd in the router's namespace,
// so that a stale pid never kills a stranger.
func (l *Lab) pidIsNAT(router string, pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(comm)) == "miniupnpd" && slices.Contains(pidsIn(l.NS(router)), pid)
}

// signalNATLocked sends sig to a router's running miniupnpd.
func (l *Lab) signalNATLocked(name string, sig syscall.Signal) error {
	r := l.Routers[name]
	if p := l.procs[name]; p != nil {
		return p.cmd.Process.Signal(sig)
	}
	if r.PID > 0 && l.pidIsNAT(name, r.PID) {
		return syscall.Kill(r.PID, sig)
	}
	return fmt.Errorf("lab: no miniupnpd runs in %s", name)
}

// RestartNAT restarts a router's miniupnpd. Its NAT-PMP epoch starts
// again from 0 (system_uptime=no), it multicasts a PCP ANNOUNCE (no
// NAT-PMP announcement) to 224.0.0.1:5350 on its LAN, and it restores the
// mappings of its lease file. With reboot the router forgets everything
// as a power cycle would: the lease file, the rules miniupnpd made (its
// three chains are flushed) and the connection tracking table (so
// masqueraded flows get new mappings), before miniupnpd starts again.
func (l *Lab) RestartNAT(router string, reboot bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.routerLocked(router)
	switch {
	case l.closed:
		return errors.New("lab: closed")
	case r == nil:
		return fmt.Errorf("lab: no router %q", router)
	case !r.NATPMP:
		return fmt.Errorf("lab: %s runs no miniupnpd", r.Name)
	}
	if err := l.stopNATLocked(r.Name); err != nil {
		return err
	}
	if reboot {
		if err := os.Remove(l.natFile(r.Name, "leases")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("lab: %w", err)
		}
		cmd := exec.Command(tool("ip"), "netns", "exec", l.NS(r.Name), tool("nft"), "-f", "-")
		cmd.Stdin = strings.NewReader("flush chain inet filter miniupnpd\nflush chain inet filter prerouting_miniupnpd\nflush chain inet filter postrouting_miniupnpd\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("lab: flushing miniupnpd's chains in %s: %v: %s", r.Name, err, out)
		}
		if err := l.flushConntrack(r.Name); err != nil {
			return err
		}
	}
	if err := l.startNATLocked(r.Name); err != nil {
		return err
	}
	return l.saveLocked()
}

// netlinkIn returns a netlink handle in namespace ns; the caller closes it.
func (l *Lab) netlinkIn(ns string) (*netlink.Handle, error) {
	h, err := netns.GetFromName(l.NS(ns))
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	defer h.Close() // the handle keeps its own reference to the namespace
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("lab: netlink in %s: %w", ns, err)
	}
	return nl, nil
}

// flushConntrack empties a namespace's connection tracking table.
func (l *Lab) flushConntrack(ns string) error {
	nl, err := l.netlinkIn(ns)
	if err != nil {
		return err
	}
	defer nl.Close()
	if err := nl.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("lab: flushing conntrack in %s: %w", ns, err)
	}
	return nil
}

// forgetAddress drops a namespace's conntrack entries of flows that came
// in to addr: after the address is gone they can never be answered, and
// one that held a port mapping's tuple would take the tuple from every
// new flow of the mapped host toward the same peer (which would get
// another port).
func (l *Lab) forgetAddress(ns string, addr netip.Addr) error {
	nl, err := l.netlinkIn(ns)
	if err != nil {
		return err
	}
	defer nl.Close()
	f := &netlink.ConntrackFilter{}
	if err := f.AddIP(netlink.ConntrackOrigDstIP, addr.AsSlice()); err != nil {
		return err
	}
	if _, err := nl.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
		return fmt.Errorf("lab: conntrack in %s: %w", ns, err)
	}
	return nil
}

// SetWAN gives a router a new address on its uplink, as a new DHCP lease
// from the provider would: the old address goes, the new one comes (with
// the link's prefix if it lies in the link's subnet, else as a /32 that
// inet routes to the router), and the default route is put back. The
// kernel drops the conntrack entries masqueraded to the old address; the
// router drops those of flows that came in to it (a port mapping's), as
// a router's firewall does when its WAN address changes.
// Then miniupnpd gets SIGUSR1, because with enable_upnp=no miniupnpd
// 2.3.1 watches no netlink events (its interface watcher opens only with
// UPnP): it answers with the new address at once, multicasts one NAT-PMP
// announcement (opcode 128, carrying the epoch before the change) and one
// PCP ANNOUNCE (epoch 0), and its epoch starts again from 0.
func (l *Lab) SetWAN(router string, a netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.routerLocked(router)
	switch {
	case l.closed:
		return errors.New("lab: closed")
	case r == nil:
		return fmt.Errorf("lab: no router %q", router)
	case !a.Is4() || a == r.Upper || a == r.WAN.Addr():
		return fmt.Errorf("lab: %v cannot be %s's new WAN address", a, r.Name)
	case r.Uplink != Internet && !r.Link.Contains(a):
		return fmt.Errorf("lab: %s's uplink is %s (%v): %v is not on it", r.Name, r.Uplink, r.Link, a)
	}
	for _, o := range l.Routers {
		if o != r && o.WAN.Addr() == a {
			return fmt.Errorf("lab: %v is %s's already", a, o.Name)
		}
	}
	np := netip.PrefixFrom(a, 32)
	if r.Link.Contains(a) {
		np = netip.PrefixFrom(a, r.Link.Bits())
	}
	old := r.WAN
	var inet []string
	if r.Uplink == Internet {
		if np.Bits() == 32 {
			inet = append(inet, fmt.Sprintf("route replace %s dev %s", np, r.InetIf))
		}
		if !r.NAT {
			inet = append(inet, fmt.Sprintf("route replace %s via %s dev %s", l.Networks[r.LAN].Subnet, a, r.InetIf))
		}
	}
	if err := l.ipBatch("inet", inet); err != nil {
		return err
	}
	if err := l.ipBatch(r.Name, []string{
		fmt.Sprintf("addr del %s dev wan0", old),
		fmt.Sprintf("addr add %s dev wan0", np),
		fmt.Sprintf("route replace default via %s dev wan0 onlink", r.Upper),
	}); err != nil {
		return err
	}
	r.WAN = np
	if r.NAT {
		if err := l.forgetAddress(r.Name, old.Addr()); err != nil {
			return err
		}
	}
	if r.Uplink == Internet && old.Bits() == 32 {
		l.ipBatch("inet", []string{fmt.Sprintf("route del %s dev %s", old, r.InetIf)})
	}
	if r.NATPMP {
		if err := l.signalNATLocked(r.Name, syscall.SIGUSR1); err != nil {
			return err
		}
	}
	return l.saveLocked()
}

// Move takes a host off the network it is on and puts it on another one
// (a network name such as "cafe" or "homeB", or its router's name), as a
// laptop leaving home Wi-Fi for a cafe's: its interface there goes down
// and loses its address, its interface into the new network (made the
// first time, with the same MAC address) comes up with the host's address
// there, and the default route follows. Nothing else in the host changes
// (a TUN device and its routes stay), so Move can run under a live
// stream. The host's address on a network is the network's .NUM, NUM
// being fixed per host (see Host.Num).
func (l *Lab) Move(host, to string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.Hosts[strings.TrimPrefix(host, l.Prefix)]
	n := l.Networks[to]
	if n == nil {
		if r := l.Routers[to]; r != nil {
			n = l.Networks[r.LAN]
		}
	}
	switch {
	case l.closed:
		return errors.New("lab: closed")
	case h == nil:
		return fmt.Errorf("lab: no host %q", host)
	case n == nil:
		return fmt.Errorf("lab: no network %q (have %v)", to, l.networkNames())
	case h.Network == n.Name:
		return nil
	}
	if !slices.Contains(h.Links, n.Name) {
		if err := l.ipBatch(h.Name, l.hostLinkLines(h, n)); err != nil {
			return err
		}
		if err := l.ipBatch(n.Router, []string{
			fmt.Sprintf("link set dev p-%s master lan0", h.Name),
			fmt.Sprintf("link set dev p-%s up", h.Name),
		}); err != nil {
			return err
		}
		h.Links = append(h.Links, n.Name)
	}
	// The new link comes up first, with no address: the host gets its
	// address and default route there only once the kernel has the link
	// (and its bridge port) operationally up. Before that the veth's
	// queue is not active yet: an ARP request sent then (by a stream
	// that goes on through the move) is dropped, and the neighbour code
	// asks again only after a second (retrans_time), which showed as
	// 1 s stalls in about 2 of 10 moves under a TCP stream.
	if err := l.ipBatch(h.Name, []string{fmt.Sprintf("link set dev eth-%s up", n.Name)}); err != nil {
		return err
	}
	if err := l.waitLinksUp([]string{h.Name, n.Router}, 3*time.Second); err != nil {
		return err
	}
	lines := []string{
		fmt.Sprintf("addr flush dev eth-%s", h.Network),
		fmt.Sprintf("link set dev eth-%s down", h.Network),
	}
	if err := l.ipBatch(h.Name, append(lines, hostUpLines(h, n)...)); err != nil {
		return err
	}
	h.Network = n.Name
	h.Addr = nthAddr(n.Subnet, h.Num)
	h.Addr6 = netip.Addr{}
	if n.Subnet6.IsValid() {
		h.Addr6 = nth6(n.Subnet6, h.Num)
	}
	return l.saveLocked()
}

// CutIP cuts (cut true) or mends every flow of one IP version (4 or 6)
// through a NAT router, whichever way it goes, established or not: a home
// whose IPv4 (or IPv6) broke while the other still works. The rule sits
// first in the router's forward chain, in a chain of its own (cut).
func (l *Lab) CutIP(router string, version int, cut bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.routerLocked(router)
	switch {
	case r == nil || !r.NAT:
		return fmt.Errorf("lab: CutIP: %q is not a NAT router of this lab", router)
	case version != 4 && version != 6:
		return fmt.Errorf("lab: CutIP: IP version %d", version)
	}
	r.Cut = slices.DeleteFunc(r.Cut, func(v int) bool { return v == version })
	if cut {
		r.Cut = append(r.Cut, version)
	}
	rules := "flush chain inet filter cut\n"
	for _, v := range r.Cut {
		rules += fmt.Sprintf("add rule inet filter cut meta nfproto ipv%d drop\n", v)
	}
	cmd := l.Exec(r.Name, tool("nft"), "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: CutIP %s: %v: %s", r.Name, err, out)
	}
	what := "mended"
	if cut {
		what = "cut"
	}
	l.logf("lab %s: IPv%d through %s %s", l.Prefix, version, r.Name, what)
	return l.saveLocked()
}

// natState is a short description of a router's miniupnpd for Topology.
func (l *Lab) natStateLocked(r *Router) string {
	if !r.NATPMP {
		return "no port mapping"
	}
	if r.PID > 0 && alive(r.PID) {
		return r.Protocols.String() + ": miniupnpd pid " + strconv.Itoa(r.PID)
	}
	return r.Protocols.String() + ": miniupnpd NOT RUNNING"
}
