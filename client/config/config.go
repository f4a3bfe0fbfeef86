// Package config is btmm-client's configuration: a TOML file (example.toml
// beside this file shows and explains every setting), overrides from the
// command line (Set, Overrides), checks (Validate), and what the settings
// turn into: the user's domain and TSIG key, the TLS configuration for the
// server, the path of the host key.
//
// The file is TOML (https://toml.io, v1.0.0), read with
// github.com/BurntSushi/toml. All settings are top-level keys; the file has
// no tables. A key the program does not know is an error, so a typo is not
// silently ignored. Durations are strings in Go's syntax ("90m", "2h"); a
// bare number is refused, since the TOML library would read it as
// nanoseconds. Relative paths in the file are relative to the file's
// directory.
//
// A typical use, as the run command does it:
//
//	c, err := config.Load(path)      // file and defaults; no checks yet
//	err = c.Apply(overrides)         // --set name=value, in order
//	err = c.Validate()               // every problem, each naming its setting
//	for _, w := range c.Warnings() { log.Warn(w) }
//	key, err := c.LoadKey()
//	tlsConf, err := c.TLSConfig()
package config

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// Config holds btmm-client's settings. The toml tag of each field is its
// name in the file and in Set.
type Config struct {
	// Zone is the members zone the server is authoritative for, such as
	// "members.example.com". Required.
	Zone string `toml:"zone"`
	// User is the user's name, one DNS label: the user's domain is
	// user.zone (RFC 6281 §2's "alice.members.me.com"). Required.
	User string `toml:"user"`
	// Host is this host's name, one DNS label: it is published as
	// host.user.zone. Default: the first label of the system's host name,
	// lowercased.
	Host string `toml:"host"`
	// Key is the path of the user's TSIG key in BIND's key-file format
	// (btmm-client keygen or tsig-keygen output); it must hold a key named
	// after the user's domain. Required.
	Key string `toml:"key"`
	// StateDir holds what the client keeps between runs: the host's X25519
	// key (KeyPath), and the user key's files (package client/hostcert:
	// user.pub, user.key, host.cert, revoked). Created with mode 0700 if
	// missing. Default /var/lib/btmm-client.
	StateDir string `toml:"state_dir"`
	// Server is the DNS server, host:port, that discovery starts from: the
	// client asks it the SRV records that name the update and LLQ servers.
	// Default: the first nameserver in /etc/resolv.conf, port 53.
	Server string `toml:"server"`
	// Transport is how updates and LLQs reach the server: "tls" (RFC 6281
	// §7.2, the default), "tcp" or "udp" (both unencrypted: for a lab, or
	// a server that is reached over a trusted network).
	Transport string `toml:"transport"`
	// TLSCA is a PEM file of the certificates to trust for the server
	// instead of the system's roots. Only with transport "tls".
	TLSCA string `toml:"tls_ca"`
	// TLSPin is the base64 SHA-256 of the server certificate's
	// SubjectPublicKeyInfo. When set it is the only check made on the
	// server's certificate (see TLSConfig). Not together with TLSCA; only
	// with transport "tls".
	TLSPin string `toml:"tls_pin"`
	// TLSServerName is the name to expect in the server's certificate (and
	// to send as SNI). Default: the host name of the server the SRV records
	// point at, set by the caller for each connection.
	TLSServerName string `toml:"tls_server_name"`
	// TunnelPort is the local UDP port of the tunnel (ESP in UDP and the
	// handshakes), the one NAT-PMP maps. Default 4500 (RFC 3948's NAT-T
	// port).
	TunnelPort int `toml:"tunnel_port"`
	// ESPSuites is the tunnel's preference order of ESP cipher suites,
	// comma-separated: "AES-256-GCM", "ChaCha20-Poly1305". Default ""
	// (both, AES-256-GCM first where the CPU has AES instructions).
	// Listing one suite only refuses peers that do not offer it.
	ESPSuites string `toml:"esp_suites"`
	// Lease is the lease asked for the host's records in each update
	// (RFC 9664 UPDATE-LEASE); the server may grant another, which the
	// client then follows. Default 90m; RFC 6281 §5.2's range is 30m to 2h.
	Lease time.Duration `toml:"lease"`
	// LLQLease is the lease asked for each LLQ (RFC 8764). Default 2h;
	// RFC 6281 §5.3's range is 15m to 2h.
	LLQLease time.Duration `toml:"llq_lease"`
	// StatusSocket is the Unix socket on which the daemon answers
	// btmm-client status. Default /run/btmm-client/status.sock (the
	// directory is made if missing; the packaged service has it as its
	// runtime directory), which `btmm-client status` asks by default.
	StatusSocket string `toml:"status_socket"`
	// LogLevel is "debug", "info", "warn" or "error" (log/slog's names,
	// with slog's offsets such as "info+2" accepted). Default "info".
	LogLevel string `toml:"log_level"`
	// ESPKeyLog, for debugging only, is a file to which the tunnel appends
	// the keys of every ESP SA it makes, as lines of Wireshark's esp_sa
	// table (see package client/tunnel/esp, keylog.go), so that Wireshark
	// or tshark can decrypt captured tunnel packets; like TLS's
	// SSLKEYLOGFILE. Anyone who can read the file can read the tunnel
	// traffic of the SAs in it. Default "" (off). run's --esp-keylog flag
	// overrides it.
	ESPKeyLog string `toml:"esp_keylog"`
	// TunnelMode is where the tunnel's inner side lives: "tun" (the
	// default), a TUN device with the host's tunnel address, which needs
	// root or CAP_NET_ADMIN; or "userspace", a TCP/IP stack inside the
	// client, which needs no privilege: applications reach the other hosts
	// through the proxies below, and they reach this one on the forwarded
	// ports only. run's --userspace flag sets it.
	TunnelMode string `toml:"tunnel_mode"`
	// SOCKSProxy is the loopback address of the SOCKS5 proxy into the
	// tunnel in userspace mode (it resolves the user's host names itself:
	// curl --socks5-hostname). Default 127.0.0.1:1080; "" turns it off.
	SOCKSProxy string `toml:"socks_proxy"`
	// HTTPProxy is the loopback address of the HTTP proxy (CONNECT, and
	// plain http:// requests) into the tunnel in userspace mode. Default
	// 127.0.0.1:8080; "" turns it off.
	HTTPProxy string `toml:"http_proxy"`
	// Forward lists, comma-separated, the TCP ports of this host's tunnel
	// address that are forwarded to the same port on 127.0.0.1 in
	// userspace mode ("22" lets the other hosts ssh in). Default none.
	// run's --forward PORT adds one.
	Forward string `toml:"forward"`
	// Metrics, if set, is the address (host:port) where the client serves
	// Prometheus metrics at /metrics, in the btmm_client_ namespace. Off
	// by default; run's --metrics flag sets it. Peers are labelled by
	// their tunnel addresses: keep it on loopback or a trusted network.
	Metrics string `toml:"metrics"`
	// Services are the host's services to publish in the user's domain
	// for DNS-SD browsing (RFC 6763), each "NAME[:PORT] [key=value ...]":
	// a well-known NAME (ssh, sftp-ssh, smb, rfb, http, https, afp) has its
	// type and port, any other RFC 6335 name (TCP) or full type
	// ("_ipp._tcp") needs the port; the key=value strings make the TXT
	// record. One service per type. --set takes them comma-separated.
	Services []string `toml:"services"`
	// ServicesAuto also publishes the well-known services this host
	// listens on, reachable on its tunnel address (Linux: read from
	// /proc/net/tcp6, every 30 s); a configured service of the same type
	// wins. Elsewhere it does nothing, and says so in the log.
	ServicesAuto bool `toml:"services_auto"`
	// Push is how changes are followed, by the daemon's watcher and by
	// browse: "auto" (the default) uses DNS Push (RFC 8765) where the
	// server offers it (an SRV record at _dns-push-tls._tcp) and LLQ
	// (RFC 8764) where not; "dns-push" or "llq" use only that one. DNS
	// Push needs transport "tls".
	Push string `toml:"push"`

	// source names where the settings came from, for error messages.
	source string
	// hostFromSystem is set when Host was taken from the system's host
	// name, so that an invalid one can be explained.
	hostFromSystem bool
	// overridden holds the settings changed by Set, whose errors name
	// the command line instead of the file.
	overridden map[string]bool
}

// Defaults of the settings that have a fixed one.
const (
	DefaultStateDir     = "/var/lib/btmm-client"
	DefaultTransport    = "tls"
	DefaultTunnelPort   = 4500
	DefaultLease        = 90 * time.Minute
	DefaultLLQLease     = 2 * time.Hour
	DefaultStatusSocket = "/run/btmm-client/status.sock"
	DefaultLogLevel     = "info"
	DefaultTunnelMode   = "tun"
	DefaultSOCKSProxy   = "127.0.0.1:1080"
	DefaultHTTPProxy    = "127.0.0.1:8080"
	DefaultPush         = "auto"
)

// Limits on the two leases. Outside [MinLease, MaxLease] a lease is an
// error: under 30 s the client would do little but refresh, and over a day a
// host that vanished would stay published for that long. Inside, a lease
// out of RFC 6281's range only draws a warning (Warnings): the server clamps
// it to its own range anyway and the client follows the lease granted, and
// short leases are what a test of expiry needs.
const (
	MinLease = 30 * time.Second
	MaxLease = 24 * time.Hour

	// RFC 6281 §5.2: update leases from 30 minutes to 2 hours.
	RFCMinLease = 30 * time.Minute
	RFCMaxLease = 2 * time.Hour
	// RFC 6281 §5.3: LLQ leases from 15 minutes to 2 hours.
	RFCMinLLQLease = 15 * time.Minute
	RFCMaxLLQLease = 2 * time.Hour
)

// HostKeyFile is the name of the host's X25519 key file in StateDir.
const HostKeyFile = "x25519.key"

// PeersFile is the name of the cached peer table in StateDir.
const PeersFile = "peers.json"

// IdentityFile is the name of the host's kept identity (tunnel address
// and label) in StateDir.
const IdentityFile = "identity"

// Where the system defaults come from; tests replace them.
var (
	hostname   = os.Hostname
	resolvConf = "/etc/resolv.conf"
)

// Default returns the settings that have fixed defaults; zone, user and key
// are empty, and so are host and server (Load fills those from the system).
func Default() *Config {
	return &Config{
		StateDir:     DefaultStateDir,
		Transport:    DefaultTransport,
		TunnelPort:   DefaultTunnelPort,
		Lease:        DefaultLease,
		LLQLease:     DefaultLLQLease,
		StatusSocket: DefaultStatusSocket,
		LogLevel:     DefaultLogLevel,
		TunnelMode:   DefaultTunnelMode,
		SOCKSProxy:   DefaultSOCKSProxy,
		HTTPProxy:    DefaultHTTPProxy,
		Push:         DefaultPush,
	}
}

// ForwardPorts returns the ports of Forward; Validate checks them.
func (c *Config) ForwardPorts() []uint16 {
	var ports []uint16
	for _, f := range strings.Split(c.Forward, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if p, err := strconv.ParseUint(f, 10, 16); err == nil && p > 0 {
			ports = append(ports, uint16(p))
		}
	}
	return ports
}

// Load reads the configuration file at path over the defaults, then fills
// host and server from the system if the file leaves them out. It fails on a
// file that is not TOML, on unknown keys and on values of the wrong type,
// naming the file; it does not Validate, so that command-line overrides can
// still complete or correct the file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := Default()
	if err := c.decode(string(data), path); err != nil {
		return nil, err
	}
	c.systemDefaults()
	return c, nil
}

// decode reads TOML text over c. name is the file's path: it names the
// file in errors, and relative paths in the file are made relative to its
// directory.
func (c *Config) decode(data, name string) error {
	c.source = name
	md, err := toml.Decode(data, c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("config: %s:%d: %s", name, pe.Position.Line, pe.Message)
		}
		return fmt.Errorf("config: %s: %w", name, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		keys := make([]string, len(u))
		for i, k := range u {
			keys[i] = strconv.Quote(k.String())
		}
		return fmt.Errorf("config: %s: unknown setting %s (known: %s)", name, strings.Join(keys, ", "), strings.Join(Names(), ", "))
	}
	for _, k := range []string{"lease", "llq_lease"} {
		if md.Type(k) == "Integer" {
			return fmt.Errorf("config: %s: %s: write a duration as a string such as \"90m\", not a bare number", name, k)
		}
	}
	dir := filepath.Dir(name)
	for _, k := range []struct {
		name string
		p    *string
	}{{"key", &c.Key}, {"tls_ca", &c.TLSCA}, {"state_dir", &c.StateDir}, {"status_socket", &c.StatusSocket}, {"esp_keylog", &c.ESPKeyLog}} {
		if md.IsDefined(k.name) && *k.p != "" && !filepath.IsAbs(*k.p) {
			*k.p = filepath.Join(dir, *k.p)
		}
	}
	return nil
}

// systemDefaults fills host from the system's host name and server from
// /etc/resolv.conf where they are empty. Failures leave them empty, for
// Validate to report.
func (c *Config) systemDefaults() {
	if c.Host == "" {
		if h, err := hostname(); err == nil && h != "" {
			c.Host, _, _ = strings.Cut(strings.ToLower(h), ".")
			c.hostFromSystem = true
		}
	}
	if c.Server == "" {
		if ns := firstNameserver(resolvConf); ns != "" {
			c.Server = net.JoinHostPort(ns, "53")
		}
	}
}

// firstNameserver returns the address of the first "nameserver" line of a
// resolv.conf file, or "".
func firstNameserver(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			return f[1]
		}
	}
	return ""
}

// Domain is the user's domain, user.zone., lowercase and fully qualified:
// the name of the user's TSIG key and the parent of the user's hosts.
func (c *Config) Domain() string {
	return dns.CanonicalName(c.User + "." + c.Zone)
}

// HostName is this host's name, host.user.zone., lowercase and fully
// qualified.
func (c *Config) HostName() string {
	return dns.CanonicalName(c.Host + "." + c.User + "." + c.Zone)
}

// KeyPath is where the host's X25519 key is kept (identity.LoadOrCreateKey).
func (c *Config) KeyPath() string {
	return filepath.Join(c.StateDir, HostKeyFile)
}

// IdentityPath is where the host's identity is kept across restarts.
func (c *Config) IdentityPath() string {
	return filepath.Join(c.StateDir, IdentityFile)
}

// PeersPath is where the last known table of the user's other hosts is
// kept, for a start while the server is down.
func (c *Config) PeersPath() string {
	return filepath.Join(c.StateDir, PeersFile)
}

// Level is LogLevel as a log/slog level; it is slog.LevelInfo for a level
// that Validate would refuse.
func (c *Config) Level() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// LoadKey reads the key file and returns the key named after the user's
// domain; other keys in the file are ignored.
func (c *Config) LoadKey() (keyfile.Key, error) {
	if c.Key == "" {
		return keyfile.Key{}, c.fieldErr("key", "required: the path of the user's TSIG key file")
	}
	keys, err := keyfile.ParseFile(c.Key)
	if err != nil {
		return keyfile.Key{}, c.fieldErr("key", err.Error())
	}
	want := c.Domain()
	names := make([]string, 0, len(keys))
	for _, k := range keys {
		if k.Name == want {
			return k, nil
		}
		names = append(names, strconv.Quote(k.Name))
	}
	has := "no keys"
	if len(names) > 0 {
		has = "only " + strings.Join(names, ", ")
	}
	return keyfile.Key{}, c.fieldErr("key", fmt.Sprintf("%s has no key named %q (it has %s); make one with btmm-client keygen --user %s --zone %s", c.Key, want, has, c.User, c.Zone))
}

// FieldError is one problem with one setting.
type FieldError struct {
	// Source is the configuration file, if the settings came from one.
	Source string
	// Field is the setting's name, as in the file.
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Source != "" {
		return fmt.Sprintf("config: %s: %s: %s", e.Source, e.Field, e.Msg)
	}
	return fmt.Sprintf("config: %s: %s", e.Field, e.Msg)
}

func (c *Config) fieldErr(field, msg string) *FieldError {
	src := c.source
	if c.overridden[field] {
		src = "--set"
	}
	return &FieldError{Source: src, Field: field, Msg: msg}
}
