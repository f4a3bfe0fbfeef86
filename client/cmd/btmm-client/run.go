package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"strings"
	"syscall"

	"github.com/openbtmm/btmm/client/config"
	"github.com/openbtmm/btmm/client/daemon"
)

func runDaemon(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the configuration file (TOML; required)")
	var sets config.Overrides
	fs.Var(&sets, "set", "override one setting, NAME=VALUE (repeatable): "+fmt.Sprint(config.Names()))
	var keyLog *string
	fs.Func("esp-keylog", "debugging only: append the keys of every ESP SA to `FILE` (mode 0600) as lines of Wireshark's esp_sa table, so that Wireshark/tshark can decrypt captured tunnel packets; anyone who can read FILE can read the tunnel traffic. Overrides the config's esp_keylog; an empty FILE turns it off. Off by default", func(s string) error {
		keyLog = &s
		return nil
	})
	userspaceMode := fs.Bool("userspace", false, "run the tunnel without a TUN device and without privilege: a TCP/IP stack inside the client, reached through a SOCKS5 proxy (socks_proxy, default 127.0.0.1:1080) and an HTTP proxy (http_proxy, default 127.0.0.1:8080); the other hosts reach this one on the --forward ports only. Sets tunnel_mode = \"userspace\"")
	metrics := fs.String("metrics", "", "serve Prometheus metrics at http://`ADDR`/metrics (host:port, such as 127.0.0.1:9120; off by default; overrides the config's metrics)")
	var forwards []string
	fs.Func("forward", "in userspace mode, forward `PORT` of this host's tunnel address to 127.0.0.1:PORT (repeatable; added to the config's forward)", func(s string) error {
		forwards = append(forwards, s)
		return nil
	})
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: btmm-client run --config FILE [--set NAME=VALUE ...] [--esp-keylog FILE] [--metrics ADDR] [--userspace [--forward PORT ...]]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if *path == "" || fs.NArg() > 0 {
		return usageError{errors.New("run needs --config FILE, and nothing else")}
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if err := cfg.Apply(sets); err != nil {
		return err
	}
	if keyLog != nil { // the flag wins over the file and --set
		if err := cfg.Set("esp_keylog", *keyLog); err != nil {
			return err
		}
	}
	if *metrics != "" {
		cfg.Set("metrics", *metrics)
	}
	if *userspaceMode {
		cfg.Set("tunnel_mode", "userspace")
	}
	if len(forwards) > 0 {
		all := forwards
		if cfg.Forward != "" {
			all = append([]string{cfg.Forward}, forwards...)
		}
		cfg.Set("forward", strings.Join(all, ","))
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.Level()}))
	logf := func(format string, a ...any) { logger.Info(fmt.Sprintf(format, a...)) }
	for _, w := range cfg.Warnings() {
		logger.Warn(w)
	}
	d, err := daemon.New(cfg, logf)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = d.Run(ctx)
	logf("btmm-client: stopped")
	return err
}
