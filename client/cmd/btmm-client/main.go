// Command btmm-client is the host half of Back to My Mac: it publishes where
// this host can be reached in its owner's domain, watches the owner's other
// hosts, and carries the tunnels between them.
//
// This first version makes user keys; the daemon (run, status) follows.
package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

const usage = `btmm-client: Back to My Mac for your own machines (RFC 6281)

Usage:
  btmm-client keygen --user USER --zone ZONE [--algorithm ALG]
        Make a new random TSIG key for USER.ZONE and print it in BIND's
        key-file format: add it to the server's keys file, and keep it
        for the client.
  btmm-client help
        Show this help.

Still to come: "run" (publish this host and tunnel to the others) and
"status".
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintf(os.Stderr, "btmm-client: %v\n\n%s", err, usage)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "btmm-client: %v\n", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return nil
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "keygen":
		return keygen(args[1:], stdout, stderr)
	default:
		return usageError{fmt.Errorf("unknown command %q", args[0])}
	}
}

// algorithms maps the names keygen accepts to their key sizes: as long as
// the hash, as RFC 8945 §8 recommends.
var algorithms = map[string]int{
	"hmac-sha256": 32,
	"hmac-sha512": 64,
	"hmac-sha1":   20,
}

func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "the user's name, one DNS label (required)")
	zone := fs.String("zone", "", "the members zone, e.g. members.example.com (required)")
	alg := fs.String("algorithm", "hmac-sha256", "the HMAC: hmac-sha256, hmac-sha512 or hmac-sha1")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: btmm-client keygen --user USER --zone ZONE [--algorithm ALG]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if *user == "" || *zone == "" || fs.NArg() > 0 {
		return usageError{errors.New("keygen needs --user and --zone, and nothing else")}
	}
	if strings.Contains(*user, ".") {
		return usageError{fmt.Errorf("user %q must be one label, without dots", *user)}
	}
	size, ok := algorithms[strings.ToLower(*alg)]
	if !ok {
		return usageError{fmt.Errorf("unknown algorithm %q", *alg)}
	}
	name := dns.CanonicalName(*user + "." + *zone)
	if _, ok := dns.IsDomainName(name); !ok {
		return usageError{fmt.Errorf("%q is not a domain name", name)}
	}
	secret := make([]byte, size)
	rand.Read(secret)
	key := keyfile.Key{Name: name, Algorithm: dns.CanonicalName(*alg), Secret: base64.StdEncoding.EncodeToString(secret)}
	_, err := stdout.Write(keyfile.Format([]keyfile.Key{key}))
	return err
}
