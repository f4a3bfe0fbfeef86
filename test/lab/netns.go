package lab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/run/netns"

// Go runs fn on a locked OS thread that has entered the namespace, and
// returns fn's error. Sockets that fn opens belong to the namespace and
// stay there after Go returns, so a test can open a listener in a
// namespace and use it from anywhere. Goroutines that fn starts do not
// run in the namespace.
func (l *Lab) Go(ns string, fn func() error) error {
	return inNS(l.NS(ns), fn)
}

func inNS(full string, fn func() error) error {
	target, err := netns.GetFromName(full)
	if err != nil {
		return fmt.Errorf("lab: namespace %s: %w", full, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("lab: the thread's namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("lab: entering %s: %w", full, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked and so ends with this goroutine:
			// no other goroutine runs in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("lab: leaving %s: %w", full, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// sysctl writes /proc/sys/KEY (dots for slashes) in the namespace; keys
// whose file is missing are skipped when optional.
func (l *Lab) sysctl(ns string, optional bool, kv ...string) error {
	return l.Go(ns, func() error {
		for i := 0; i+1 < len(kv); i += 2 {
			path := "/proc/sys/" + strings.ReplaceAll(kv[i], ".", "/")
			if err := os.WriteFile(path, []byte(kv[i+1]), 0o644); err != nil {
				if optional && errors.Is(err, os.ErrNotExist) {
					continue
				}
				return fmt.Errorf("lab: sysctl %s=%s in %s: %w", kv[i], kv[i+1], ns, err)
			}
		}
		return nil
	})
}

// ipBatch runs `ip -n NS -batch -` with lines as its input.
func (l *Lab) ipBatch(ns string, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	cmd := exec.Command(tool("ip"), "-n", l.NS(ns), "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: ip in %s: %v: %s\n(input:\n%s)", ns, err, bytes.TrimSpace(out), strings.Join(lines, "\n"))
	}
	return nil
}

// run runs a command and returns an error holding its output.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: %s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// namespaces lists the named namespaces whose names start with prefix.
func namespaces(prefix string) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// pidsIn lists the processes whose network namespace is the named one
// (what `ip netns pids` does).
func pidsIn(full string) []int {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, full), &want); err != nil {
		return nil
	}
	procs, _ := os.ReadDir("/proc")
	var out []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", p.Name(), "ns", "net"), &st) == nil &&
			st.Dev == want.Dev && st.Ino == want.Ino {
			out = append(out, pid)
		}
	}
	return out
}

// removeNamespaces stops every process in the namespaces that start with
// prefix (SIGTERM, then SIGKILL after two seconds) and deletes them. The
// veths and bridges in them go with them.
func removeNamespaces(prefix string) error {
	all, err := namespaces(prefix)
	if err != nil {
		return err
	}
	// Twice: a process may have been entering a namespace (ip netns
	// exec) while the first round looked.
	for range 2 {
		var pids []int
		for _, ns := range all {
			pids = append(pids, pidsIn(ns)...)
		}
		killAll(pids, 2*time.Second)
	}
	var errs []error
	for _, ns := range all {
		if err := run(tool("ip"), "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killAll sends SIGTERM to pids (again every 100 ms: miniupnpd can miss
// one, see stopNATLocked), waits up to grace for them to end, then sends
// SIGKILL to those left.
func killAll(pids []int, grace time.Duration) {
	deadline := time.Now().Add(grace)
	for {
		left := 0
		for _, pid := range pids {
			if alive(pid) {
				syscall.Kill(pid, syscall.SIGTERM)
				left++
			}
		}
		if left == 0 || time.Now().After(deadline) {
			break
		}
		for t := time.Now(); time.Since(t) < 100*time.Millisecond; time.Sleep(5 * time.Millisecond) {
			if !slices.ContainsFunc(pids, alive) {
				return
			}
		}
	}
	for _, pid := range pids {
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// alive reports whether pid is a process that has not ended (a zombie
// counts as ended).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// ListenPacket opens a packet socket (net.ListenPacket) in a namespace.
func (l *Lab) ListenPacket(ns, network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := l.Go(ns, func() (err error) {
		c, err = net.ListenPacket(network, address)
		return err
	})
	return c, err
}

// Listen opens a stream listener (net.Listen) in a namespace.
func (l *Lab) Listen(ns, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := l.Go(ns, func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}

// Dial connects from a namespace (net.Dialer.Dial with the timeout).
func (l *Lab) Dial(ns, network, address string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := l.Go(ns, func() (err error) {
		c, err = (&net.Dialer{Timeout: timeout}).Dial(network, address)
		return err
	})
	return c, err
}

// waitLinksUp waits until every link that is set up in the namespaces is
// operationally up too, bridges without ports aside. Until the kernel's
// link watcher has seen a new veth's carrier, its bridge does not
// forward through it: the first ARP exchange is lost and the first
// packet waits a second for the retry.
func (l *Lab) waitLinksUp(nss []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, ns := range nss {
		h, err := netns.GetFromName(l.NS(ns))
		if err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		nl, err := netlink.NewHandleAt(h)
		h.Close()
		if err != nil {
			return fmt.Errorf("lab: netlink in %s: %w", ns, err)
		}
		for {
			links, err := nl.LinkList()
			if err != nil {
				nl.Close()
				return fmt.Errorf("lab: links in %s: %w", ns, err)
			}
			var down []string
			for _, lk := range links {
				a := lk.Attrs()
				if lk.Type() != "veth" && lk.Type() != "bridge" || a.Flags&net.FlagUp == 0 || a.Flags&net.FlagLoopback != 0 || a.OperState == netlink.OperUp {
					continue
				}
				if lk.Type() == "bridge" && !slices.ContainsFunc(links, func(p netlink.Link) bool {
					return p.Attrs().MasterIndex == a.Index && p.Attrs().Flags&net.FlagUp != 0
				}) {
					continue
				}
				down = append(down, a.Name+" "+a.OperState.String())
			}
			if len(down) == 0 {
				break
			}
			if time.Now().After(deadline) {
				nl.Close()
				return fmt.Errorf("lab: links in %s are not up after %v: %v", ns, timeout, down)
			}
			time.Sleep(5 * time.Millisecond)
		}
		nl.Close()
	}
	return nil
}
