// Command btmm-client is the host half of Back to My Mac: it publishes where
// this host can be reached in its owner's domain, watches the owner's other
// hosts, and carries the tunnels between them.
//
// Commands: run (the daemon), status (asks the running daemon), browse
// (lists the user's services, live), keygen (makes a user key), enroll,
// certify and revoke (the user signing key, package client/hostcert).
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
  btmm-client run --config FILE [--set NAME=VALUE ...] [--esp-keylog FILE]
        Run the client: map the tunnel port (PCP, NAT-PMP or UPnP IGD;
        behind NATs none of them opens, publish the endpoint the server
        sees and punch through to the peers), publish this
        host's records in the user's domain (its IPv4 endpoint, and its
        global IPv6 address with a PCP pinhole where the router offers
        one; leased TSIG-signed updates, over TLS by default), watch the user's other hosts by DNS
        Push or long-lived queries, follow network changes, and carry IPv6
        between this host's tunnel address and theirs (a TUN device,
        ESP in UDP keyed by a Noise handshake; needs root or
        CAP_NET_ADMIN, else it runs without the tunnel and says so).
        Settings come from the TOML file (see
        client/config/example.toml); --set overrides one, e.g. --set
        host=laptop or --set esp_suites=ChaCha20-Poly1305. SIGINT or
        SIGTERM stops it cleanly: the records are removed and the
        mapping deleted.
        --esp-keylog FILE (debugging only, off by default) appends the
        keys of every ESP SA to FILE as Wireshark esp_sa lines, so that
        Wireshark or tshark can decrypt the tunnel's packets.
  btmm-client status [--config FILE | --socket PATH] [--json]
        Show what the running client knows: this host, its mapping, the
        servers it uses, the user's other hosts (peers) and the tunnel to
        each: endpoint, cipher, SA age, last handshake, bytes, drops by
        reason; and how peers are trusted: the pinned user key, and the
        hosts refused, each with the reason.
  btmm-client browse --config FILE [--push auto|dns-push|llq] [--json] [--once] [TYPE]
        List the services (DNS-SD, RFC 6763) that the user's hosts publish
        (the services setting), live: "+ INSTANCE  TYPE  TARGET:PORT  TXT"
        as one appears, "- ..." as it goes. TYPE is one type (_ssh._tcp, or
        a short name: ssh, smb, rfb, http, ...); without it, every type.
        Changes come by DNS Push where the server offers it, else by
        long-lived queries (--push or the push setting choose). --json
        prints one JSON object per event; --once prints what is there now
        and exits. Needs the config file's server and key, no root and no
        running daemon. Connect to a TARGET:PORT: it goes through the
        tunnel.
  btmm-client keygen --user USER --zone ZONE [--algorithm ALG]
                     [--password | --password-file FILE]
        Make a TSIG key for USER.ZONE and print it in BIND's key-file
        format: add it to the server's keys file, and keep it for the
        client. The key is random, or with --password derived from a
        password (asked on the terminal without echo, else the first line
        of standard input; --password-file reads the first line of FILE)
        with Argon2id, so that the same password gives the same key on
        every host and the server stores no password. --user-key FILE
        also makes the user's signing key (Ed25519, random or from the
        same password under its own salt) and writes it to FILE; it
        never goes to the server.
  btmm-client enroll --config FILE (--password | --password-file FILE |
                     --user-key FILE | --new | --pin KEY) [--add]
        Pin the user's signing key on this host (state_dir/user.pub) and
        keep its private half (state_dir/user.key) unless --pin gives the
        public one only; then restart run. An enrolled host publishes a
        certificate of its key signed by the user key, and accepts only
        hosts with one: the server can no longer add a host of its own.
        On a host set up before user keys, this is the migration: run it
        on each of the user's hosts (the same password or key file), then
        restart them. --add keeps the keys pinned already (replacing the
        user key with an overlap).
  btmm-client certify --config FILE --host NAME --ula ADDR --key KEY [--days N]
        On a host that holds the user key: print the certificate of
        another host (its tunnel address and static key as its status
        shows them), for its state_dir/host.cert, if it was enrolled with
        --pin.
  btmm-client revoke --config FILE [--key KEY ...] [HOST ...]
        On a host that holds the user key: add the hosts' static keys to
        the user's signed revocation list and publish it
        (_btmm-revoked.USER.ZONE); every peer refuses them as soon as the
        list reaches it.
  btmm-client help
        Show this help.

Each command takes --help for its flags.
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
	case "run":
		return runDaemon(args[1:], stdout, stderr)
	case "status":
		return status(args[1:], stdout, stderr)
	case "browse":
		return browseCmd(args[1:], stdout, stderr)
	case "enroll":
		return enroll(args[1:], stdout, stderr)
	case "certify":
		return certify(args[1:], stdout, stderr)
	case "revoke":
		return revoke(args[1:], stdout, stderr)
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
	password := fs.Bool("password", false, "derive the key from a password (btmm-tsig-v1: Argon2id), read from the terminal without echo, or else the first line of standard input")
	passwordFile := fs.String("password-file", "", "derive the key from the password on the first line of `FILE`")
	userKey := fs.String("user-key", "", "also make the user's signing key (Ed25519; random, or with --password derived from the same password under its own salt) and write it to `FILE` (mode 0600; never to the server): btmm-client enroll --user-key FILE pins it on each host")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: btmm-client keygen --user USER --zone ZONE [--algorithm ALG] [--password | --password-file FILE] [--user-key FILE]\n\n")
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
	if *password && *passwordFile != "" {
		return usageError{errors.New("keygen takes --password or --password-file, not both")}
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
	var secret []byte
	var pw []byte
	if *password || *passwordFile != "" {
		var err error
		if pw, err = readPassword(*passwordFile, name, stderr); err != nil {
			return err
		}
		if secret, err = derive(pw, name, *alg); err != nil {
			return err
		}
	} else {
		secret = make([]byte, size)
		rand.Read(secret)
	}
	if *userKey != "" {
		if err := writeUserKey(*userKey, pw, name, stderr); err != nil {
			return err
		}
	}
	key := keyfile.Key{Name: name, Algorithm: dns.CanonicalName(*alg), Secret: base64.StdEncoding.EncodeToString(secret)}
	_, err := stdout.Write(keyfile.Format([]keyfile.Key{key}))
	return err
}
