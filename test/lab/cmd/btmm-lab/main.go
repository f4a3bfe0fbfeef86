// Command btmm-lab builds, shows and removes the btmm network lab (package
// github.com/openbtmm/btmm/test/lab) from a shell: for demos and for
// looking around by hand. It needs root.
//
//	btmm-lab up [-double-nat] [-host NAME=NETWORK]... [-q]
//	btmm-lab demo [-bin DIR]
//	btmm-lab bench-tunnel [-bin DIR] [-time D] [-runs N] [-baseline FILE]
//	btmm-lab down [PREFIX]
//	btmm-lab show [PREFIX]
//	btmm-lab move PREFIX HOST NETWORK
//	btmm-lab setwan PREFIX ROUTER ADDRESS
//	btmm-lab restart-nat [-reboot] PREFIX ROUTER
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/openbtmm/btmm/test/lab"
	"github.com/openbtmm/btmm/test/lab/demo"
	"github.com/openbtmm/btmm/test/lab/tunnelbench"
)

const usage = `btmm-lab: the btmm network lab (network namespaces; needs root)

Usage:
  btmm-lab up [-double-nat] [-ipv6] [-host NAME=NETWORK]... [-q]
        build a lab, print its topology and, on the last line, its prefix;
        the lab keeps running (miniupnpd included) until "down"
        -double-nat   add the carrier (a NAT without NAT-PMP) and homeC behind it
        -ipv6         give the server, homeA, homeB and the cafe global IPv6
                      (2001:db8::/32, no NAT; the home routers filter it)
        -host N=NET   put host N on network NET (repeat; default hostA=homeA,
                      hostB=homeB, and hostC=homeC with -double-nat)
        -q            print only the prefix
  btmm-lab demo [-bin DIR]
        run the whole system in a lab: the server and two hosts behind two
        NATs, telling what happens (registered, mapped port, peer seen, a
        NAT's new address pushed); then remove everything. DIR holds
        coredns and btmm-client (default bin, as make build leaves them)
  btmm-lab bench-tunnel [-bin DIR] [-time D] [-runs N] [-baseline FILE]
        TCP throughput (iperf3) from a host behind one NAT to a host behind
        another, through the btmm tunnel and through wireguard-go in the
        same lab, N runs of D each in turns (default 3 of 10s), one way and
        both ways at once (--bidir), and with the receiving host in
        userspace mode; prints the runs, the medians, "ratio X"
        and "ratio both ways X" (btmm / wireguard-go). DIR holds coredns,
        btmm-client and wireguard-go (make build); FILE, another
        btmm-client (an older build) measured in the same turns
  btmm-lab down [PREFIX]
        remove the lab with PREFIX, or every lab and leftover (prefix ` + lab.Root + `)
  btmm-lab show [PREFIX]
        print the topology of the running labs (or of one)
  btmm-lab move PREFIX HOST NETWORK
        move a host to another network (homeA, homeB, cafe, carrier, homeC)
  btmm-lab setwan PREFIX ROUTER ADDRESS
        give a router a new public address (miniupnpd announces it)
  btmm-lab restart-nat [-reboot] PREFIX ROUTER
        restart a router's miniupnpd (new epoch); -reboot also forgets its
        mappings (lease file, rules, connection tracking)
  btmm-lab cut PREFIX ROUTER 4|6
  btmm-lab mend PREFIX ROUTER 4|6
        cut (or mend) every IPv4 or IPv6 flow through a NAT router

Run a command in a namespace of the lab with
  ip netns exec PREFIXNAME COMMAND      e.g. ip netns exec btmmlab3f2a-hostA ping 23.0.0.53
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "btmm-lab:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("see btmm-lab --help")

type hostFlags map[string]string

func (h hostFlags) String() string { return fmt.Sprint(map[string]string(h)) }
func (h hostFlags) Set(s string) error {
	name, net, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want NAME=NETWORK, have %q", s)
	}
	h[name] = net
	return nil
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(out, usage)
		return errUsage
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("btmm-lab "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	switch cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(out, usage)
		return nil
	case "up":
		double := fs.Bool("double-nat", false, "")
		ipv6 := fs.Bool("ipv6", false, "")
		quiet := fs.Bool("q", false, "")
		hosts := hostFlags{}
		fs.Var(hosts, "host", "")
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		opts := lab.Options{DoubleNAT: *double, IPv6: *ipv6}
		if len(hosts) > 0 {
			opts.Hosts = hosts
		}
		if *quiet {
			logf = nil
		}
		l, err := lab.New(logf, opts)
		if err != nil {
			return err
		}
		if !*quiet {
			fmt.Fprint(out, l.Topology())
		}
		fmt.Fprintln(out, l.Prefix)
		return nil
	case "demo":
		bin := fs.String("bin", "bin", "")
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return demo.Run(ctx, demo.Options{Bin: *bin, Out: out})
	case "bench-tunnel":
		bin := fs.String("bin", "bin", "")
		d := fs.Duration("time", 10*time.Second, "")
		runs := fs.Int("runs", 3, "")
		baseline := fs.String("baseline", "", "")
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		if *d < 2*time.Second || *runs < 1 {
			return fmt.Errorf("bench-tunnel: -time at least 2s and -runs at least 1: %w", errUsage)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		_, err := tunnelbench.Run(ctx, tunnelbench.Options{Bin: *bin, Duration: *d, Runs: *runs, Baseline: *baseline, Out: out})
		return err
	case "down":
		if err := parse(fs, args, 0, 1); err != nil {
			return err
		}
		prefix := lab.Root
		if fs.NArg() == 1 {
			prefix = fs.Arg(0)
		}
		return lab.Cleanup(prefix)
	case "show":
		if err := parse(fs, args, 0, 1); err != nil {
			return err
		}
		prefixes, err := lab.Running()
		if err != nil {
			return err
		}
		if fs.NArg() == 1 {
			prefixes = []string{fs.Arg(0)}
		}
		if len(prefixes) == 0 {
			fmt.Fprintln(out, "no lab is running")
		}
		for i, p := range prefixes {
			if i > 0 {
				fmt.Fprintln(out)
			}
			l, err := lab.Open(p, nil)
			if err != nil {
				fmt.Fprintf(out, "%s: leftover namespaces without a lab.json (remove with: btmm-lab down %s)\n", p, p)
				continue
			}
			fmt.Fprint(out, l.Topology())
		}
		return nil
	case "move":
		if err := parse(fs, args, 3, 3); err != nil {
			return err
		}
		l, err := lab.Open(fs.Arg(0), logf)
		if err != nil {
			return err
		}
		if err := l.Move(fs.Arg(1), fs.Arg(2)); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s is on %s now: %v\n", fs.Arg(1), l.Where(fs.Arg(1)), l.Addr(fs.Arg(1)))
		return nil
	case "setwan":
		if err := parse(fs, args, 3, 3); err != nil {
			return err
		}
		a, err := netip.ParseAddr(fs.Arg(2))
		if err != nil {
			return err
		}
		l, err := lab.Open(fs.Arg(0), logf)
		if err != nil {
			return err
		}
		return l.SetWAN(fs.Arg(1), a)
	case "restart-nat":
		reboot := fs.Bool("reboot", false, "")
		if err := parse(fs, args, 2, 2); err != nil {
			return err
		}
		l, err := lab.Open(fs.Arg(0), logf)
		if err != nil {
			return err
		}
		return l.RestartNAT(fs.Arg(1), *reboot)
	case "cut", "mend":
		if err := parse(fs, args, 3, 3); err != nil {
			return err
		}
		v, err := strconv.Atoi(fs.Arg(2))
		if err != nil || v != 4 && v != 6 {
			return fmt.Errorf("IP version %q: 4 or 6: %w", fs.Arg(2), errUsage)
		}
		l, err := lab.Open(fs.Arg(0), logf)
		if err != nil {
			return err
		}
		return l.CutIP(fs.Arg(1), v, cmd == "cut")
	}
	return fmt.Errorf("unknown command %q: %w", cmd, errUsage)
}

func parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %v: %w", fs.Name(), err, errUsage)
	}
	if fs.NArg() < minArgs || fs.NArg() > maxArgs {
		return fmt.Errorf("%s: wrong number of arguments: %w", fs.Name(), errUsage)
	}
	return nil
}
