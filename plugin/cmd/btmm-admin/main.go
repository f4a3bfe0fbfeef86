// Command btmm-admin manages the users of a running btmm server through
// its admin socket (the btmm plugin's admin property): it adds a user and
// prints the key to hand to the user, revokes one, rotates one's key, lists
// them, and imports a BIND key file. Changes take effect at once on every
// server of the zone, with no reload.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/adminapi"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// defaultSocket is where the packaged server's Corefile puts the socket.
const defaultSocket = "/run/btmm/admin.sock"

const usage = `usage: btmm-admin [-socket PATH] COMMAND [ARGS]

Manages the users of a running btmm server, with no reload.

Commands:
  add NAME [-algorithm ALG] [-secret BASE64]
        add a user (alice, or alice.members.example.com.) and print its
        key in BIND's key-file form, for the user's btmm-client or nsupdate
  revoke NAME [-keep-records]
        revoke a user: its key stops working at once, its LLQs end, and its
        records are deleted (with -keep-records, left to expire)
  rotate NAME [-overlap DURATION]
        give a user a new key and print it; the old key still works for
        DURATION (default 24h; 0 ends it at once)
  list [-json]
        list the users: name, algorithm, where kept, rotation in progress
  show NAME
        show one user
  import FILE
        add every key of a BIND key file (tsig-keygen's output) as a user

The socket is -socket, else $BTMM_ADMIN_SOCKET, else ` + defaultSocket + `.
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "btmm-admin:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("see btmm-admin -help")

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("btmm-admin", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage) }
	socket := fs.String("socket", "", "the server's admin socket")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if *socket == "" {
		*socket = os.Getenv("BTMM_ADMIN_SOCKET")
	}
	if *socket == "" {
		*socket = defaultSocket
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	c := adminapi.NewClient(*socket)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "add":
		return add(ctx, c, rest, out)
	case "revoke":
		return revoke(ctx, c, rest, out)
	case "rotate":
		return rotate(ctx, c, rest, out)
	case "list":
		return list(ctx, c, rest, out)
	case "show":
		return show(ctx, c, rest, out)
	case "import":
		return importFile(ctx, c, rest, out)
	}
	return fmt.Errorf("unknown command %q: %w", cmd, errUsage)
}

// parse parses a command's flags around its one NAME argument (flags may
// come before or after it).
func parse(fs *flag.FlagSet, args []string) (string, error) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return "", fmt.Errorf("%s: %v: %w", fs.Name(), err, errUsage)
	}
	if fs.NArg() == 0 {
		return "", fmt.Errorf("%s needs a NAME: %w", fs.Name(), errUsage)
	}
	name := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil || fs.NArg() != 0 {
		return "", fmt.Errorf("%s takes one NAME: %w", fs.Name(), errUsage)
	}
	return name, nil
}

func add(ctx context.Context, c *adminapi.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("add", flag.ContinueOnError)
	alg := fs.String("algorithm", "hmac-sha256", "the key's HMAC")
	secret := fs.String("secret", "", "an existing key, base64 (default: a random one)")
	name, err := parse(fs, args)
	if err != nil {
		return err
	}
	u, err := c.Add(ctx, adminapi.AddRequest{Name: name, Algorithm: *alg, Secret: *secret})
	if err != nil {
		return err
	}
	return printKey(out, u)
}

func revoke(ctx context.Context, c *adminapi.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	keep := fs.Bool("keep-records", false, "leave the user's records to expire")
	name, err := parse(fs, args)
	if err != nil {
		return err
	}
	r, err := c.Revoke(ctx, name, *keep)
	if err != nil {
		return err
	}
	if r.LeftToExpire {
		fmt.Fprintf(out, "revoked %s; its records are left to expire\n", r.Name)
	} else {
		fmt.Fprintf(out, "revoked %s; removed the records of %d names\n", r.Name, r.RecordNames)
	}
	return nil
}

func rotate(ctx context.Context, c *adminapi.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("rotate", flag.ContinueOnError)
	overlap := fs.Duration("overlap", 24*time.Hour, "how long the old key still works")
	name, err := parse(fs, args)
	if err != nil {
		return err
	}
	u, err := c.Rotate(ctx, name, adminapi.RotateRequest{Overlap: adminapi.Duration(*overlap)})
	if err != nil {
		return err
	}
	if u.PreviousUntil != nil {
		fmt.Fprintf(out, "# the previous key of %s works until %s\n", u.Name, u.PreviousUntil.Format(time.RFC3339))
	}
	return printKey(out, u)
}

func show(ctx context.Context, c *adminapi.Client, args []string, out io.Writer) error {
	name, err := parse(flag.NewFlagSet("show", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	u, err := c.User(ctx, name)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	row(tw, u)
	return tw.Flush()
}

func list(ctx context.Context, c *adminapi.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "one JSON object per user and line")
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return fmt.Errorf("list takes only -json: %w", errUsage)
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		return c.List(ctx, func(u adminapi.User) error { return enc.Encode(u) })
	}
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tALGORITHM\tKEPT IN\tPREVIOUS KEY UNTIL")
	err := c.List(ctx, func(u adminapi.User) error { row(tw, u); return nil })
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	return err
}

func row(w io.Writer, u adminapi.User) {
	until := "-"
	if u.PreviousUntil != nil {
		until = u.PreviousUntil.Format(time.RFC3339)
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", u.Name, u.Algorithm, u.Source, until)
}

func importFile(ctx context.Context, c *adminapi.Client, args []string, out io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("import takes one FILE: %w", errUsage)
	}
	// Parsed here too, so that a mistake is named by this file's line.
	if _, err := keyfile.ParseFile(args[0]); err != nil {
		return err
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := c.Import(ctx, f)
	if err != nil {
		return err
	}
	for _, name := range r.Skipped {
		fmt.Fprintf(out, "%s: there already, skipped\n", name)
	}
	fmt.Fprintf(out, "imported %d users from %s; %d were there already\n", r.Added, args[0], r.Existed)
	return nil
}

// printKey prints a user's key as BIND's tsig-keygen does, for the
// user's btmm-client (keys) or nsupdate -k.
func printKey(out io.Writer, u adminapi.User) error {
	alg, ok := keyfile.Algorithm(u.Algorithm)
	if !ok {
		return fmt.Errorf("the server answered an unknown algorithm %q", u.Algorithm)
	}
	_, err := out.Write(keyfile.Format([]keyfile.Key{{Name: u.Name, Algorithm: alg, Secret: u.Secret}}))
	return err
}
