// Package demo runs the whole system on one machine, in the network lab:
// the server (bin/coredns) on the lab's internet, and two hosts of one
// user behind two NATs, each running bin/btmm-client (package system); and
// it tells in plain words what happens. It is `make demo` (btmm-lab demo).
package demo

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
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
		for _, p := range st.Peers {
			say("%s sees its peer %s at %s (pushed by a long-lived query).", watcher.Host, p.Host, p.Public)
		}
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
	say("The laptop stopped cleanly: its records and its NAT mapping are removed.")
	if _, err := desktop.WaitStatus(ctx, 5*time.Second, func(st daemon.Status) bool { return len(st.Peers) == 0 }); err != nil {
		return fmt.Errorf("the desktop still lists the laptop: %w", err)
	}
	say("The desktop saw it go.")
	desktop.Stop()
	server.Stop()
	return nil
}
