package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/dnssd"
	"github.com/openbtmm/btmm/client/tunnel/handshake"
)

// Validate checks every setting without touching the file system or the
// network (LoadKey and TLSConfig read their files). It returns nil or all the
// problems at once, joined (errors.Join), each a *FieldError naming its
// setting.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, c.fieldErr(field, fmt.Sprintf(format, args...)))
	}

	zoneOK := false
	switch z := dns.CanonicalName(c.Zone); {
	case c.Zone == "":
		bad("zone", "required: the members zone, such as \"members.example.com\"")
	case z == ".":
		bad("zone", "the root is not a members zone")
	default:
		if _, ok := dns.IsDomainName(z); !ok || strings.HasPrefix(c.Zone, ".") {
			bad("zone", "%q is not a domain name", c.Zone)
		} else {
			zoneOK = true
		}
	}
	userOK := c.checkLabel("user", c.User, &errs, "the user's name")
	hostOK := c.checkLabel("host", c.Host, &errs, "this host's name")
	if zoneOK && userOK && hostOK {
		// The longest names the host publishes are its SRV owner and the
		// SRV target (RFC 6281 §3); both must fit in 255 octets.
		for _, n := range []string{"_autotunnel._udp." + c.HostName(), "AutoTunnel-00-00-00-00-00-00-00-00." + c.Domain()} {
			if _, ok := dns.IsDomainName(n); !ok {
				bad("zone", "%s would be longer than a domain name may be", n)
				break
			}
		}
	}

	if c.Key == "" {
		bad("key", "required: the path of the user's TSIG key file (btmm-client keygen makes one)")
	}
	if c.StateDir == "" {
		bad("state_dir", "must not be empty")
	}
	if c.Server == "" {
		bad("server", "not set, and no nameserver in %s to take it from: set it to host:port", resolvConf)
	} else if host, port, err := net.SplitHostPort(c.Server); err != nil {
		bad("server", "%q is not host:port: %v", c.Server, err)
	} else if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || host == "" {
		bad("server", "%q is not host:port with a port from 1 to 65535", c.Server)
	}

	switch c.Transport {
	case "tls":
		if c.TLSCA != "" && c.TLSPin != "" {
			bad("tls_pin", "set together with tls_ca: pin the server's key or name a CA, not both")
		}
	case "tcp", "udp":
		for _, f := range []struct{ name, v string }{{"tls_ca", c.TLSCA}, {"tls_pin", c.TLSPin}, {"tls_server_name", c.TLSServerName}} {
			if f.v != "" {
				bad(f.name, "set, but transport is %q: TLS settings apply only to transport \"tls\"", c.Transport)
			}
		}
	default:
		bad("transport", "%q is not \"tls\", \"tcp\" or \"udp\"", c.Transport)
	}
	if c.TLSPin != "" {
		if _, err := decodePin(c.TLSPin); err != nil {
			bad("tls_pin", "%v", err)
		}
	}
	if c.TLSServerName != "" {
		if _, ok := dns.IsDomainName(c.TLSServerName); !ok {
			bad("tls_server_name", "%q is not a domain name", c.TLSServerName)
		}
	}

	if c.TunnelPort < 1 || c.TunnelPort > 65535 {
		bad("tunnel_port", "%d is not a port from 1 to 65535", c.TunnelPort)
	}
	if _, err := handshake.ParseSuites(c.ESPSuites); err != nil {
		bad("esp_suites", "%v", err)
	}
	for _, l := range []struct {
		name string
		v    time.Duration
	}{{"lease", c.Lease}, {"llq_lease", c.LLQLease}} {
		if l.v < MinLease || l.v > MaxLease {
			bad(l.name, "%v is outside [%v, %v]", l.v, MinLease, MaxLease)
		}
	}
	if c.StatusSocket == "" {
		bad("status_socket", "must not be empty")
	}
	if c.Metrics != "" {
		if _, port, err := net.SplitHostPort(c.Metrics); err != nil {
			bad("metrics", "%q is not host:port: %v", c.Metrics, err)
		} else if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			bad("metrics", "%q has no port from 1 to 65535", c.Metrics)
		}
	}
	switch c.TunnelMode {
	case "tun":
		if c.Forward != "" {
			bad("forward", "set, but tunnel_mode is \"tun\": with a TUN device every port of the tunnel address is this host's own")
		}
	case "userspace":
		for _, f := range []struct{ name, v string }{{"socks_proxy", c.SOCKSProxy}, {"http_proxy", c.HTTPProxy}} {
			if f.v == "" {
				continue
			}
			// No authentication: loopback only.
			if ap, err := netip.ParseAddrPort(f.v); err != nil || !ap.Addr().IsLoopback() || ap.Port() == 0 {
				bad(f.name, "%q is not a loopback address and port, such as 127.0.0.1:1080 (the proxy has no authentication)", f.v)
			}
		}
		for _, f := range strings.Split(c.Forward, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			if p, err := strconv.ParseUint(f, 10, 16); err != nil || p == 0 {
				bad("forward", "%q is not a port from 1 to 65535", f)
			}
		}
	default:
		bad("tunnel_mode", "%q is not \"tun\" or \"userspace\"", c.TunnelMode)
	}
	if _, err := dnssd.ParseAll(c.Services); err != nil {
		for _, e := range unjoin(err) {
			bad("services", "%v", e)
		}
	}
	switch c.Push {
	case "auto", "llq":
	case "dns-push":
		if c.Transport != "tls" {
			bad("push", "\"dns-push\", but transport is %q: DNS Push runs over TLS only (RFC 8765); use \"auto\" or \"llq\"", c.Transport)
		}
	default:
		bad("push", "%q is not \"auto\", \"dns-push\" or \"llq\"", c.Push)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		bad("log_level", "%q is not \"debug\", \"info\", \"warn\" or \"error\"", c.LogLevel)
	}
	if c.ESPKeyLog != "" {
		// The key log is appended to: pointing it at one of the client's
		// own files would corrupt that file.
		for _, f := range []struct{ what, path string }{
			{"the TSIG key file (key)", c.Key},
			{"the CA file (tls_ca)", c.TLSCA},
			{"the status socket (status_socket)", c.StatusSocket},
			{"the host's X25519 key (in state_dir)", c.KeyPath()},
		} {
			if f.path != "" && filepath.Clean(c.ESPKeyLog) == filepath.Clean(f.path) {
				bad("esp_keylog", "%q is %s: name a file of its own", c.ESPKeyLog, f.what)
			}
		}
		if strings.HasSuffix(c.ESPKeyLog, "/") {
			bad("esp_keylog", "%q is a directory: name a file", c.ESPKeyLog)
		}
	}
	return errors.Join(errs...)
}

// unjoin returns the errors errors.Join made err of, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// ServiceList returns the configured services; Validate checks them.
func (c *Config) ServiceList() []dnssd.Service {
	s, _ := dnssd.ParseAll(c.Services)
	return s
}

// checkLabel checks that v is one DNS label of letters, digits and hyphens
// that neither starts nor ends with a hyphen (a host name label, RFC 1123
// §2.1): what the user and host names become in every published name.
func (c *Config) checkLabel(field, v string, errs *[]error, what string) bool {
	msg := ""
	switch {
	case v == "" && field == "host":
		msg = "not set, and the system's host name gave none: set it to one DNS label"
	case v == "":
		msg = "required: " + what + ", one DNS label"
	case len(v) > 63:
		msg = fmt.Sprintf("%q is longer than the 63 octets of a DNS label", v)
	case strings.Contains(v, "."):
		msg = fmt.Sprintf("%q must be one DNS label, without dots", v)
	case v[0] == '-' || v[len(v)-1] == '-':
		msg = fmt.Sprintf("%q must not start or end with a hyphen", v)
	default:
		for _, r := range v {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
				msg = fmt.Sprintf("%q has %q: use letters, digits and hyphens", v, r)
				break
			}
		}
	}
	if msg == "" {
		return true
	}
	if field == "host" && c.hostFromSystem && v != "" {
		msg += " (taken from the system's host name: set host)"
	}
	*errs = append(*errs, c.fieldErr(field, msg))
	return false
}

// Warnings lists settings that are valid but probably not what was meant:
// leases outside RFC 6281's ranges (the server clamps them to its own).
func (c *Config) Warnings() []string {
	var w []string
	if c.Lease < RFCMinLease || c.Lease > RFCMaxLease {
		w = append(w, fmt.Sprintf("lease %v is outside RFC 6281's [%v, %v] (§5.2); the server may grant another", c.Lease, RFCMinLease, RFCMaxLease))
	}
	if c.LLQLease < RFCMinLLQLease || c.LLQLease > RFCMaxLLQLease {
		w = append(w, fmt.Sprintf("llq_lease %v is outside RFC 6281's [%v, %v] (§5.3); the server may grant another", c.LLQLease, RFCMinLLQLease, RFCMaxLLQLease))
	}
	return w
}

// field returns the settable field whose toml tag is name.
func (c *Config) field(name string) (reflect.Value, bool) {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" && tag == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// Names lists the settings, in the order of Config's fields.
func Names() []string {
	t := reflect.TypeFor[Config]()
	var names []string
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" {
			names = append(names, tag)
		}
	}
	return names
}

// Set changes one setting from text, as a command-line override: name is
// the setting's name in the file, value is what would be on the right of
// "=" there but without quotes (Set("lease", "45m"), Set("host", "laptop")).
// Paths are taken as given, so relative ones are relative to the working
// directory. Set checks only the type (a number, a duration); Validate
// checks the rest, and names the command line, not the file, for a setting
// Set changed.
func (c *Config) Set(name, value string) error {
	f, ok := c.field(name)
	if !ok {
		return fmt.Errorf("config: unknown setting %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	switch f.Interface().(type) {
	case string:
		f.SetString(value)
	case int:
		n, err := strconv.Atoi(value)
		if err != nil {
			return fmt.Errorf("config: --set %s: %q is not a number", name, value)
		}
		f.SetInt(int64(n))
	case bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("config: --set %s: %q is not true or false", name, value)
		}
		f.SetBool(b)
	case []string:
		var list []string
		for _, v := range strings.Split(value, ",") {
			if v = strings.TrimSpace(v); v != "" {
				list = append(list, v)
			}
		}
		f.Set(reflect.ValueOf(list))
	case time.Duration:
		d, err := time.ParseDuration(value)
		if err != nil {
			return fmt.Errorf("config: --set %s: %q is not a duration such as \"90m\"", name, value)
		}
		f.SetInt(int64(d))
	default:
		panic("config: no Set for the type of " + name) // a new field's type needs a case
	}
	if c.overridden == nil {
		c.overridden = make(map[string]bool)
	}
	c.overridden[name] = true
	if name == "host" {
		c.hostFromSystem = false
	}
	return nil
}

// Overrides collects "name=value" command-line overrides, to be applied
// with Apply once the file is loaded. It is a flag.Value, for a flag that
// may be repeated:
//
//	var o config.Overrides
//	fs.Var(&o, "set", "override a setting of the config file: `name=value` (repeatable)")
//
// Set checks the form and the name at once, so that a typo fails while the
// flags are parsed.
type Overrides []string

// String shows the overrides, space-separated.
func (o *Overrides) String() string {
	if o == nil {
		return ""
	}
	return strings.Join(*o, " ")
}

// Set adds one "name=value" override.
func (o *Overrides) Set(s string) error {
	name, _, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("%q is not name=value", s)
	}
	if _, known := (&Config{}).field(name); !known {
		return fmt.Errorf("unknown setting %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	*o = append(*o, s)
	return nil
}

// Apply applies overrides in order: a later one for the same setting wins.
func (c *Config) Apply(o Overrides) error {
	for _, s := range o {
		name, value, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("config: --set %q is not name=value", s)
		}
		if err := c.Set(name, value); err != nil {
			return err
		}
	}
	return nil
}

// decodePin reads a tls_pin value: standard base64 of 32 octets.
func decodePin(pin string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(pin)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("%q is not the standard base64 of a SHA-256 digest (44 characters ending in \"=\")", pin)
	}
	return b, nil
}
