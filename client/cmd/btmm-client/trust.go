package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/config"
	"github.com/openbtmm/btmm/client/daemon"
	"github.com/openbtmm/btmm/client/discover"
	"github.com/openbtmm/btmm/client/hostcert"
	"github.com/openbtmm/btmm/client/identity"
	"github.com/openbtmm/btmm/client/publish"
	"github.com/openbtmm/btmm/client/watch"
)

// loadConfig reads and checks a configuration file for the trust
// commands.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, usageError{errors.New("--config FILE is required")}
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

// enroll pins the user key on this host, and stores its private half
// unless --pin gives the public one only. It is also the migration of a
// host enrolled before user keys: run it on each of the user's hosts,
// then restart them.
func enroll(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the configuration file (required): its user, zone and state_dir")
	keyFile := fs.String("user-key", "", "the user key `FILE` (btmm-client keygen --user-key): copied into the state directory")
	password := fs.Bool("password", false, "derive the user key from the user's password (btmm-userkey-v1: Argon2id), read from the terminal without echo, else the first line of standard input")
	passwordFile := fs.String("password-file", "", "derive the user key from the password on the first line of `FILE`")
	newKey := fs.Bool("new", false, "make a new random user key here (the user's first host); enroll the others with --user-key and the file this writes")
	pin := fs.String("pin", "", "pin this user public `KEY` (base64) only: the host signs nothing, and needs host.cert from btmm-client certify")
	add := fs.Bool("add", false, "keep the keys pinned already (while the user key is being replaced)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: btmm-client enroll --config FILE (--password | --password-file FILE | --user-key FILE | --new | --pin KEY) [--add]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	n := 0
	for _, set := range []bool{*password || *passwordFile != "", *keyFile != "", *newKey, *pin != ""} {
		if set {
			n++
		}
	}
	if n != 1 || fs.NArg() > 0 || *password && *passwordFile != "" {
		return usageError{errors.New("enroll takes one of --password, --password-file, --user-key, --new and --pin")}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	var keys []hostcert.UserKey // the new key, or the keys of --user-key
	var pub hostcert.PublicKey
	switch {
	case *pin != "":
		if pub, err = hostcert.ParsePublicKey(*pin); err != nil {
			return err
		}
	case *keyFile != "":
		if keys, err = hostcert.LoadKeyFile(*keyFile); err != nil {
			return err
		}
	case *newKey:
		k, err := hostcert.NewUserKey()
		if err != nil {
			return err
		}
		keys = []hostcert.UserKey{k}
	default:
		pw, err := readPassword(*passwordFile, cfg.Domain(), stderr)
		if err != nil {
			return err
		}
		k, err := hostcert.DeriveUserKey(pw, cfg.Domain())
		if err != nil {
			return err
		}
		keys = []hostcert.UserKey{k}
	}
	if len(keys) > 0 {
		pub = keys[0].Public()
	}
	pins := []hostcert.PublicKey{pub}
	for _, k := range keys {
		if !slices.Contains(pins, k.Public()) {
			pins = append(pins, k.Public())
		}
	}
	pinPath := filepath.Join(cfg.StateDir, hostcert.PinFile)
	keyPath := filepath.Join(cfg.StateDir, hostcert.KeyFile)
	oldPins, err := hostcert.LoadPinFile(pinPath)
	if err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return err
	}
	if *add {
		// The keys already pinned and held stay, after the new one.
		for _, o := range oldPins {
			if !slices.Contains(pins, o) {
				pins = append(pins, o)
			}
		}
		held, err := hostcert.LoadKeyFile(keyPath)
		if err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return err
		}
		for _, h := range held {
			if !slices.ContainsFunc(keys, func(k hostcert.UserKey) bool { return k.Public() == h.Public() }) {
				keys = append(keys, h)
			}
		}
	}
	if len(keys) > 0 {
		// A revocation list signed by a key dropped here is signed again
		// by the new one, so that no revoked key comes back.
		resigned, err := hostcert.Resign(cfg.StateDir, cfg.Domain(), oldPins, pins, keys[0])
		if err != nil {
			return err
		}
		if resigned {
			fmt.Fprintf(stdout, "signed the revocation list kept in %s again with the new key\n", filepath.Join(cfg.StateDir, hostcert.RevokedFile))
		}
	}
	if len(keys) > 0 {
		if err := hostcert.WriteFile(keyPath, hostcert.FormatKeyFile(keys...), 0o600); err != nil {
			return err
		}
	} else if err := os.Remove(keyPath); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return err
	}
	if err := hostcert.WriteFile(pinPath, hostcert.FormatPinFile(pins...), 0o644); err != nil {
		return err
	}
	for i, p := range pins {
		what := "pinned"
		if i > 0 {
			what = "still pinned"
		}
		fmt.Fprintf(stdout, "%s user key %s (ID %x) in %s\n", what, p, p.ID(), pinPath)
	}
	switch {
	case len(keys) > 1:
		fmt.Fprintf(stdout, "this host signs its certificate with each of %d user keys in %s, so that hosts pinning any of them accept it\n", len(keys), keyPath)
	case len(keys) == 1:
		fmt.Fprintf(stdout, "this host signs its own certificate with the user key in %s\n", keyPath)
	default:
		certifyHint(cfg, stdout)
	}
	fmt.Fprintf(stdout, "enrolled %s; restart btmm-client run to use it: from then on it accepts only hosts with a certificate from a pinned key\n", cfg.HostName())
	return nil
}

// certify signs the certificate of another host, for a host enrolled
// with --pin.
func certify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("certify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the configuration file of this host, which holds the user key (required)")
	host := fs.String("host", "", "the other host's name, one label (required)")
	ula := fs.String("ula", "", "its tunnel address, as its btmm-client status shows it (required)")
	key := fs.String("key", "", "its static public key, base64, as its btmm-client status shows it (required)")
	days := fs.Int("days", 365, "how many days the certificate is valid")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: btmm-client certify --config FILE --host NAME --ula ADDR --key KEY [--days N] > host.cert\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if *host == "" || *ula == "" || *key == "" || *days < 1 || fs.NArg() > 0 {
		return usageError{errors.New("certify needs --host, --ula and --key, and nothing else")}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	keys, err := hostcert.LoadKeyFile(filepath.Join(cfg.StateDir, hostcert.KeyFile))
	if err != nil {
		return fmt.Errorf("this host cannot sign: %w", err)
	}
	uk := keys[0]
	a, err := netip.ParseAddr(*ula)
	if err != nil {
		return usageError{err}
	}
	static, err := parseStatic(*key)
	if err != nil {
		return usageError{err}
	}
	now := time.Now()
	name := dns.CanonicalName(*host + "." + cfg.Domain())
	c, err := hostcert.Sign(uk, name, a, static, now.Add(-hostcert.Skew), now.AddDate(0, 0, *days))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, c.String())
	return err
}

func parseStatic(s string) ([32]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != 32 {
		return [32]byte{}, fmt.Errorf("%q is not a base64 X25519 public key", s)
	}
	return [32]byte(b), nil
}

// revoke adds hosts' static keys to the user's revocation list, signs it
// and publishes it.
func revoke(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the configuration file of this host, which holds the user key (required)")
	var keys []string
	fs.Func("key", "revoke this static public `KEY` (base64; repeatable), for a host this one does not know", func(s string) error {
		keys = append(keys, s)
		return nil
	})
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: btmm-client revoke --config FILE [--key KEY ...] [HOST ...]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() == 0 && len(keys) == 0 {
		return usageError{errors.New("revoke needs a HOST or a --key")}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	trust, err := hostcert.Load(cfg.StateDir, cfg.Domain())
	if err != nil {
		return err
	}
	if len(trust.Keys()) == 0 {
		return fmt.Errorf("this host holds no user key (%s): revoke on one that does", filepath.Join(cfg.StateDir, hostcert.KeyFile))
	}
	var statics [][32]byte
	for _, k := range keys {
		s, err := parseStatic(k)
		if err != nil {
			return usageError{err}
		}
		statics = append(statics, s)
	}
	known := knownHosts(cfg)
	for _, h := range fs.Args() {
		name := dns.CanonicalName(h)
		if !strings.Contains(strings.TrimSuffix(name, "."), ".") {
			name = dns.CanonicalName(strings.TrimSuffix(name, ".") + "." + cfg.Domain())
		}
		k, ok := known[name]
		if !ok {
			return fmt.Errorf("%s is not a host this one knows (its running client's peers, or %s): give its key with --key", name, cfg.PeersPath())
		}
		s, err := parseStatic(k)
		if err != nil {
			return err
		}
		statics = append(statics, s)
		fmt.Fprintf(stdout, "revoking %s (key %s)\n", name, k)
	}
	var serial uint64
	if old, ok := trust.Revocations(); ok {
		statics = append(statics, old.Keys...)
		serial = old.Serial
	}
	// Signed with each key held, so that while the user key is being
	// replaced, hosts that pin either take it.
	serial = hostcert.NextSerial(serial, time.Now())
	var lists []hostcert.Revocations
	var txts [][]string
	for _, k := range trust.Keys() {
		l, err := hostcert.SignRevocations(k, cfg.Domain(), serial, statics)
		if err != nil {
			return err
		}
		lists, txts = append(lists, l), append(txts, l.TXT())
	}
	list := lists[0]
	if _, err := trust.SetRevocations(txts); err != nil {
		return err
	}
	key, err := cfg.LoadKey()
	if err != nil {
		return err
	}
	tc, err := serverTLS(cfg)
	if err != nil {
		return err
	}
	pub := publish.New(publish.Config{Resolver: &discover.Resolver{Server: cfg.Server}, Zone: cfg.Zone, Key: key, Transport: cfg.Transport, TLS: tc})
	name := hostcert.RevocationName(cfg.Domain())
	m := new(dns.Msg).SetUpdate(dns.Fqdn(cfg.Zone))
	m.RemoveRRset([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT}}})
	for _, txt := range txts {
		m.Insert([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: txt}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := pub.Send(ctx, m); err != nil {
		return fmt.Errorf("the list is signed and kept in %s, but publishing it failed: %w (the running clients publish it with their records)", filepath.Join(cfg.StateDir, hostcert.RevokedFile), err)
	}
	fmt.Fprintf(stdout, "published the revocation list at %s: serial %d, %d keys revoked\n", name, list.Serial, len(list.Keys))
	return nil
}

// serverTLS is the TLS configuration for the server: nil for the plain
// transports.
func serverTLS(cfg *config.Config) (*tls.Config, error) {
	if cfg.Transport != "tls" {
		return nil, nil
	}
	return cfg.TLSConfig()
}

// knownHosts maps the user's hosts' names to their static keys, as the
// running client knows them (accepted or refused), else as it last
// cached them.
func knownHosts(cfg *config.Config) map[string]string {
	out := make(map[string]string)
	var peers []watch.Peer
	if st, err := daemon.Fetch(cfg.StatusSocket); err == nil {
		peers = st.Peers
	}
	if b, err := os.ReadFile(cfg.PeersPath()); err == nil {
		var cached []watch.Peer
		if json.Unmarshal(b, &cached) == nil {
			peers = append(peers, cached...)
		}
	}
	for _, p := range peers {
		if _, ok := out[p.Host]; !ok && p.Key != "" {
			out[p.Host] = p.Key
		}
	}
	return out
}

// writeUserKey makes the user key of domain, from the password if there
// is one, and writes it to a new file at path.
func writeUserKey(path string, password []byte, domain string, stderr io.Writer) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s exists: keygen does not replace a user key", path)
	}
	var k hostcert.UserKey
	var err error
	if password != nil {
		k, err = hostcert.DeriveUserKey(password, domain)
	} else {
		k, err = hostcert.NewUserKey()
	}
	if err != nil {
		return err
	}
	if err := hostcert.WriteFile(path, hostcert.FormatKeyFile(k), 0o600); err != nil {
		return err
	}
	pub := k.Public()
	fmt.Fprintf(stderr, "btmm-client: user key %s (ID %x) written to %s: keep it off the server\n", pub, pub.ID(), path)
	return nil
}

// certifyHint tells how to get a certificate for a host enrolled with the
// public key alone: its tunnel address and static key (made now if this
// is its first start) and the command to run on a signing host.
func certifyHint(cfg *config.Config, stdout io.Writer) {
	certPath := filepath.Join(cfg.StateDir, hostcert.CertFile)
	iface, mac, err := identity.Primary()
	var id identity.Identity
	if err == nil {
		id, err = identity.LoadOrNew(cfg.IdentityPath(), iface, mac, rand.Reader)
	}
	var keys identity.KeyPair
	if err == nil {
		keys, err = identity.LoadOrCreateKey(cfg.KeyPath())
	}
	if err != nil {
		fmt.Fprintf(stdout, "this host holds no user key: give it %s, made with btmm-client certify on a host that does (its tunnel address and key: btmm-client status, once it runs; %v)\n", certPath, err)
		return
	}
	fmt.Fprintf(stdout, "this host holds no user key: on a host that does, run\n  btmm-client certify --config FILE --host %s --ula %s --key %s\nand put its output here in %s\n", cfg.Host, id.ULA, keys.PublicBase64(), certPath)
}
