package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/openbtmm/btmm/client/config"
	"github.com/openbtmm/btmm/client/daemon"
	"github.com/openbtmm/btmm/client/portmap"
)

func status(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the configuration file, to find the status socket")
	socket := fs.String("socket", "", "the status socket (default: the configuration's, else "+config.DefaultStatusSocket+")")
	asJSON := fs.Bool("json", false, "print the status as JSON, for scripts")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: btmm-client status [--config FILE | --socket PATH] [--json]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{errors.New("status takes no arguments")}
	}
	sock := *socket
	if sock == "" {
		sock = config.DefaultStatusSocket
		if *path != "" {
			cfg, err := config.Load(*path)
			if err != nil {
				return err
			}
			sock = cfg.StatusSocket
		}
	}
	st, err := daemon.Fetch(sock)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st)
	return nil
}

func printStatus(out io.Writer, st daemon.Status) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	}
	fmt.Fprintf(tw, "host\t%s\n", st.Host)
	fmt.Fprintf(tw, "tunnel address\t%s (%s, %s)\n", st.ULA, st.Label, st.Interface)
	m := st.Mapping
	switch {
	case m.Public:
		fmt.Fprintf(tw, "reachable at\t%s (no NAT)\n", m.External)
	case m.Observed != "":
		why := m.Error
		if why == "" {
			why = "the gateway " + m.Gateway + " is itself behind a NAT"
		}
		fmt.Fprintf(tw, "reachable at\t%s (as the server sees it; %s)\n", m.Observed, why)
		fmt.Fprintf(tw, "\t%s\n", m.Reach)
	case m.External != "" && m.Protocol == "upnp" && m.Lifetime == 0:
		fmt.Fprintf(tw, "reachable at\t%s (%s via %s, permanent mapping)\n", m.External, protocolName(m.Protocol), m.Gateway)
	case m.External != "" && m.Protocol == "upnp":
		fmt.Fprintf(tw, "reachable at\t%s (%s via %s, lease %v)\n", m.External, protocolName(m.Protocol), m.Gateway, m.Lifetime)
	case m.External != "":
		fmt.Fprintf(tw, "reachable at\t%s (%s via %s, epoch %d)\n", m.External, protocolName(m.Protocol), m.Gateway, m.Epoch)
	default:
		fmt.Fprintf(tw, "reachable at\tnowhere yet (%s)\n", m.Error)
	}
	if st.Public6 != "" {
		ph := st.Pinhole
		if ph.Open {
			fmt.Fprintf(tw, "reachable over IPv6 at\t%s (a global address; PCP pinhole via %s, lifetime %v)\n", st.Public6, ph.Gateway, ph.Lifetime)
		} else {
			fmt.Fprintf(tw, "reachable over IPv6 at\t%s (a global address; no pinhole: %s; peers get in by hole punching)\n", st.Public6, ph.Error)
		}
	}
	p := st.Publish
	fmt.Fprintf(tw, "published\t%s via %s, lease %s\n", ago(p.Published), p.Server, p.Lease)
	if p.Error != "" {
		fmt.Fprintf(tw, "publish error\t%s\n", p.Error)
	}
	w := st.Watch
	what := "LLQs"
	if w.Mode == "dns-push" {
		what = "subscriptions"
	}
	fmt.Fprintf(tw, "watching\t%s via %s (%d %s)\n", w.Mode, w.Server, w.LLQs, what)
	if w.Error != "" {
		fmt.Fprintf(tw, "watch error\t%s\n", w.Error)
	}
	if !w.Since.IsZero() {
		fmt.Fprintf(tw, "server\tunreachable since %s (%s); peers and tunnels kept as last known\n", w.Since.Format(time.DateTime), ago(w.Since))
	}
	tw.Flush()
	if w.Cached {
		fmt.Fprintf(out, "\n%d peers (kept from before: the server has not answered yet)\n", len(st.Peers))
	} else {
		fmt.Fprintf(out, "\n%d peers\n", len(st.Peers))
	}
	if len(st.Peers) > 0 {
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PEER\tTUNNEL ADDRESS\tREACHABLE AT\tCHANGED")
		for _, pe := range st.Peers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", pe.Host, pe.ULA, pe.ReachableAt(), ago(pe.Changed))
		}
		tw.Flush()
	}
	printTrust(out, st.Trust)
	if st.TunnelError != "" {
		fmt.Fprintf(out, "\nno tunnel: %s\n", st.TunnelError)
		return
	}
	if st.TunnelMode == "userspace" {
		fmt.Fprintf(out, "\ntunnel in userspace mode (no TUN device): SOCKS5 proxy %s, HTTP proxy %s, forwarded ports %v\n",
			orNone(st.SOCKSProxy), orNone(st.HTTPProxy), st.Forwarded)
	}
	fmt.Fprintf(out, "\n%d tunnels\n", len(st.Tunnels))
	if len(st.Tunnels) == 0 {
		return
	}
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TUNNEL ADDRESS\tENDPOINT\tCIPHER\tSA AGE\tLAST HANDSHAKE\tIN\tOUT\tDROPS (replay/bad ICV/malformed/bad source)")
	for _, tu := range st.Tunnels {
		age := "no SA"
		if tu.HasSA {
			age = tu.SAAge.Round(time.Second).String()
		} else if tu.HandshakePending {
			age = "no SA (handshaking)"
		}
		hs := "never"
		if !tu.LastHandshake.IsZero() {
			hs = ago(tu.LastHandshake)
		}
		d := tu.Drops
		suite := tu.Suite
		if suite == "" {
			suite = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d B (%d pkts)\t%d B (%d pkts)\t%d (%d/%d/%d/%d)\n", tu.ULA, tu.Endpoint, suite, age, hs,
			tu.RxBytes, tu.RxPackets, tu.TxBytes, tu.TxPackets, d.Total(), d.Replay, d.BadICV, d.Malformed, d.BadSource)
	}
	tw.Flush()
	c := st.TunnelDrops
	fmt.Fprintf(out, "dropped for no peer: %d unknown SPI, %d to unknown addresses, %d invalid datagrams, %d refused handshakes\n",
		c.UnknownSPI, c.UnknownDest, c.InvalidUDP, c.BadHandshake)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// protocolName names the protocol of MappingStatus.Protocol for people.
func protocolName(key string) string {
	if p, err := portmap.ParseProtocol(key); err == nil {
		return p.String()
	}
	if key == "" {
		return "NAT mapping"
	}
	return key
}

// printTrust shows how peers are trusted, and the hosts refused.
func printTrust(out io.Writer, tr daemon.TrustStatus) {
	if tr.Mode != "user-key" {
		fmt.Fprintf(out, "\ntrust: the server (no user key pinned: btmm-client enroll)\n")
		return
	}
	signer := "no (certificate from host.cert)"
	if len(tr.Signers) > 0 {
		signer = fmt.Sprintf("yes, key %v", tr.Signers)
	}
	fmt.Fprintf(out, "\ntrust: user key %v; signs here: %s; own certificate until %s; %d keys revoked (list serial %d)\n",
		tr.Pins, signer, tr.CertNotAfter.Format(time.DateTime), tr.Revoked, tr.RevocationSerial)
	fmt.Fprintf(out, "%d hosts refused now (%d refusals in all)\n", len(tr.Refused), tr.RefusedTotal)
	if len(tr.Refused) > 0 {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REFUSED\tSINCE\tWHY")
		for _, r := range tr.Refused {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Host, r.Since.Format(time.DateTime), r.Reason)
		}
		tw.Flush()
	}
}
