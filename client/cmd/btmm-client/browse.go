package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/openbtmm/btmm/client/browse"
	"github.com/openbtmm/btmm/client/config"
	"github.com/openbtmm/btmm/client/discover"
	"github.com/openbtmm/btmm/client/dnssd"
	"github.com/openbtmm/btmm/client/subscribe"
)

// browseEvent is one line of browse --json.
type browseEvent struct {
	Event string    `json:"event"` // "add" or "remove"
	Time  time.Time `json:"time"`
	browse.Instance
}

func browseCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("browse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the configuration file (TOML; required): the server, the user and the key, as for run")
	var sets config.Overrides
	fs.Var(&sets, "set", "override one setting, NAME=VALUE (repeatable)")
	asJSON := fs.Bool("json", false, "print one JSON object per line and event: {\"event\":\"add\"|\"remove\",\"time\",\"name\",\"instance\",\"type\",\"target\",\"port\",\"txt\"}")
	once := fs.Bool("once", false, "print the services there now and exit")
	push := fs.String("push", "", "how to follow changes: auto (DNS Push where the server offers it, else LLQ), dns-push or llq; overrides the config's push")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: btmm-client browse --config FILE [--set NAME=VALUE ...] [--push auto|dns-push|llq] [--json] [--once] [TYPE]\n\n")
		fs.PrintDefaults()
	}
	// TYPE may come before the flags, too.
	var typeArg string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		typeArg, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 1 || fs.NArg() == 1 && typeArg != "" {
		return usageError{errors.New("browse takes one TYPE at most")}
	}
	if fs.NArg() == 1 {
		typeArg = fs.Arg(0)
	}
	if *path == "" {
		return usageError{errors.New("browse needs --config FILE")}
	}
	typ := ""
	if typeArg != "" {
		var err error
		if typ, err = dnssd.ParseType(typeArg); err != nil {
			return usageError{err}
		}
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if err := cfg.Apply(sets); err != nil {
		return err
	}
	if *push != "" {
		cfg.Set("push", *push)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	key, err := cfg.LoadKey()
	if err != nil {
		return err
	}
	var tlsConf *tls.Config
	if cfg.Transport == "tls" {
		if tlsConf, err = cfg.TLSConfig(); err != nil {
			return err
		}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.Level()}))
	logf := func(format string, a ...any) { logger.Info(fmt.Sprintf(format, a...)) }

	var mu sync.Mutex
	enc := json.NewEncoder(stdout)
	report := func(c browse.Change) {
		mu.Lock()
		defer mu.Unlock()
		if *asJSON {
			ev := browseEvent{Event: "remove", Time: time.Now().UTC(), Instance: c.Instance}
			if c.Added {
				ev.Event = "add"
			}
			enc.Encode(ev)
			return
		}
		fmt.Fprintln(stdout, c.String())
	}
	b := browse.New(cfg.Domain(), typ, report)
	sc := subscribe.Config{
		Resolver: &discover.Resolver{Server: cfg.Server}, Zone: cfg.Zone, Key: key,
		Transport: cfg.Transport, TLS: tlsConf, Lease: cfg.LLQLease, Push: cfg.Push, Logf: logf,
	}
	dial := func(ctx context.Context) (subscribe.Session, error) { return subscribe.Dial(ctx, sc) }
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *once {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	return browse.Run(ctx, dial, b, *once, logf)
}
