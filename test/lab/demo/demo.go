// Package demo runs the whole system on one machine, in the network lab:
// the server (bin/coredns) on the lab's internet, and two hosts of one
// user behind two NATs, each running bin/btmm-client (package system); and
// it tells in plain words what happens. It is `make demo` (btmm-lab demo).
package demo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/openbtmm/btmm/client/daemon"
	"github.com/openbtmm/btmm/test/lab"
	"github.com/openbtmm/btmm/test/lab/system"
)

// Options locate the binaries and say where to tell the story.
type Options struct {
	Bin  string    // the directory with coredns and btmm-client (bin/)
	Out  io.Writer // the story
	Logf lab.Logf  // the lab's own log (nil: none)
}

// Run builds a lab, runs the server and two clients in it, shows them
// finding each other, moves one NAT to a new address, stops everything
// cleanly and removes the lab. It returns the first thing that went wrong.
func Run(ctx context.Context, o Options) (err error) {
	say := func(format string, a ...any) { fmt.Fprintf(o.Out, "• "+format+"\n", a...) }
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := system.Check(o.Bin); err != nil {
		return err
	}
	l, err := lab.New(o.Logf, lab.Options{})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if left, err := lab.Running(); err == nil && !slices.Contains(left, l.Prefix) {
			say("The lab is gone: no namespace, no process left behind.")
		}
	}()
	say("A lab: an internet (23.0.0.0/8), the DNS server at %s, home A behind a NAT at %s, home B behind a NAT at %s; both NATs speak NAT-PMP (miniupnpd).",
		l.Addr("server"), l.WAN("routerA"), l.WAN("routerB"))

	sys, err := system.New(l, o.Bin)
	if err != nil {
		return err
	}
	defer sys.Close()
	sys.Enroll = true
	server, err := sys.StartServer()
	if err != nil {
		return err
	}
	defer server.Stop()
	say("The server answers for %s: updates over TLS on port 853, long-lived queries over TLS on 5353, found by SRV records.", system.Zone)

	desktop, err := sys.StartClient("hostA", "desktop")
	if err != nil {
		return err
	}
	defer desktop.Stop()
	laptop, err := sys.StartClient("hostB", "laptop")
	if err != nil {
		return err
	}
	defer laptop.Stop()

	for _, c := range []*system.Client{desktop, laptop} {
		st, err := c.WaitStatus(ctx, 10*time.Second, func(st daemon.Status) bool { return !st.Publish.Published.IsZero() })
		if err != nil {
			return fmt.Errorf("%s did not register: %w\n%s", c.Host, err, c.Out)
		}
		ext, _ := netip.ParseAddrPort(st.Mapping.External)
		say("%s (in %s) is registered as %s: its NAT mapped port %d to it (NAT-PMP), so it is reachable at %s; its tunnel address is %s.",
			c.Host, c.NS, st.Host, ext.Port(), ext, st.ULA)
	}
	for _, pair := range [][2]*system.Client{{laptop, desktop}, {desktop, laptop}} {
		watcher, other := pair[0], pair[1]
		st, err := watcher.WaitStatus(ctx, 5*time.Second, func(st daemon.Status) bool { return system.HasPeer(st, other.Host, "") })
		if err != nil {
			return fmt.Errorf("%s does not see %s: %w", watcher.Host, other.Host, err)
		}
		how := "a long-lived query"
		if st.Watch.Mode == "dns-push" {
			how = "DNS Push"
		}
		for _, p := range st.Peers {
			say("%s sees its peer %s at %s (pushed by %s).", watcher.Host, p.Host, p.Public, how)
		}
		if st.Trust.Mode != "user-key" {
			return fmt.Errorf("%s trusts %q, not the user key", watcher.Host, st.Trust.Mode)
		}
	}
	say("Both hosts were enrolled with alice's signing key (btmm-client enroll), which the server never sees: each accepts the other only with a certificate of its key signed by it, so not even the server can add a host of its own.")

	if err := tunnel(ctx, l, say, desktop, laptop); err != nil {
		return err
	}

	next := netip.MustParseAddr("23.1.1.77")
	say("Home A's NAT gets a new public address, %s, and announces it...", next)
	changed := time.Now()
	if err := l.SetWAN("routerA", next); err != nil {
		return err
	}
	if _, err := laptop.WaitStatus(ctx, 10*time.Second, func(st daemon.Status) bool { return system.HasPeer(st, desktop.Host, next.String()) }); err != nil {
		return fmt.Errorf("the laptop did not hear of the desktop's new address: %w", err)
	}
	say("...the desktop republished at once, and the laptop knew %v later.", time.Since(changed).Round(time.Millisecond))

	laptop.Stop()
	say("The laptop stopped cleanly: its records are removed (in the cafe it had no NAT mapping to delete).")
	if _, err := desktop.WaitStatus(ctx, 5*time.Second, func(st daemon.Status) bool { return len(st.Peers) == 0 }); err != nil {
		return fmt.Errorf("the desktop still lists the laptop: %w", err)
	}
	say("The desktop saw it go.")
	desktop.Stop()
	server.Stop()
	return nil
}

// tunnel shows the tunnel: the laptop pings the desktop by name, then a
// TCP connection from the laptop to the desktop carries on while the
// laptop moves to the cafe.
func tunnel(ctx context.Context, l *lab.Lab, say func(string, ...any), desktop, laptop *system.Client) error {
	for _, ns := range []string{desktop.NS, laptop.NS} {
		if err := l.SetResolver(ns, []netip.Addr{l.Addr("server")}); err != nil {
			return err
		}
	}
	st, err := daemon.Fetch(desktop.Socket)
	if err != nil {
		return err
	}
	ula, err := netip.ParseAddr(st.ULA)
	if err != nil {
		return err
	}
	name := strings.TrimSuffix(st.Host, ".")
	out, err := l.Exec(laptop.NS, "ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s from the laptop: %v\n%s", name, err, out)
	}
	say("The laptop pings %s: the name resolves through the server to the desktop's tunnel address, and the pings go through the tunnel (a Noise handshake, then ESP in UDP across both NATs): %s.",
		name, pingSummary(string(out)))

	// An echo service on the desktop's tunnel address, and one connection
	// to it from the laptop.
	ln, err := l.Listen(desktop.NS, "tcp", netip.AddrPortFrom(ula, 7007).String())
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	conn, err := l.Dial(laptop.NS, "tcp", netip.AddrPortFrom(ula, 7007).String(), 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	echo := func(line string) error {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, line+"\n"); err != nil {
			return err
		}
		got, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return err
		}
		if got != line+"\n" {
			return fmt.Errorf("echo: sent %q, got %q", line, got)
		}
		return nil
	}
	if err := echo("hello from home B"); err != nil {
		return fmt.Errorf("a TCP connection through the tunnel: %w", err)
	}
	say("The laptop opens a TCP connection to the desktop's tunnel address; a line goes there and back.")
	moved := time.Now()
	if err := l.Move(laptop.NS, "cafe"); err != nil {
		return err
	}
	if err := echo("hello from the cafe"); err != nil {
		return fmt.Errorf("the connection did not survive the move: %w", err)
	}
	took := time.Since(moved)
	st, err = desktop.WaitStatus(ctx, 5*time.Second, func(st daemon.Status) bool {
		return len(st.Tunnels) > 0 && st.Tunnels[0].Endpoint.Addr() == l.Addr(laptop.NS)
	})
	if err != nil {
		return fmt.Errorf("the desktop does not send to the laptop's new address: %w", err)
	}
	say("The laptop moves to the cafe (a new address, %s, and no NAT there); the same TCP connection carried on: the next line went through %v after the move, the desktop following the laptop's first authenticated packet from there (its tunnel now goes to %s).",
		l.Addr(laptop.NS), took.Round(time.Millisecond), st.Tunnels[0].Endpoint)
	if _, err := desktop.WaitStatus(ctx, 10*time.Second, func(st daemon.Status) bool {
		return system.HasPeer(st, laptop.Host, l.Addr(laptop.NS).String())
	}); err != nil {
		return fmt.Errorf("the desktop did not hear of the laptop's new address: %w", err)
	}
	say("The laptop published its new address too; the desktop heard of it %v after the move.", time.Since(moved).Round(time.Millisecond))
	return nil
}

// pingSummary is ping's "3 packets transmitted, 3 received, ..." line.
func pingSummary(out string) string {
	for line := range strings.Lines(out) {
		if strings.Contains(line, "packets transmitted") {
			return strings.TrimSpace(line)
		}
	}
	return "no summary"
}
