package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// fakeSystem makes the system's host name h and its resolv.conf text.
func fakeSystem(t *testing.T, h, resolv string) {
	oldHost, oldResolv := hostname, resolvConf
	t.Cleanup(func() { hostname, resolvConf = oldHost, oldResolv })
	hostname = func() (string, error) {
		if h == "" {
			return "", errors.New("no host name")
		}
		return h, nil
	}
	resolvConf = filepath.Join(t.TempDir(), "resolv.conf")
	if resolv != "" {
		os.WriteFile(resolvConf, []byte(resolv), 0o644)
	}
}

// writeConfig writes a config file into a new directory and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "btmm-client.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// fields returns the names of the settings that err's *FieldErrors name.
func fields(err error) []string {
	var names []string
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*FieldError); ok {
			names = append(names, fe.Field)
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return names
}

func TestExample(t *testing.T) {
	fakeSystem(t, "ignored", "nameserver 192.0.2.1\n")
	c, err := Load("example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings()) != 0 {
		t.Errorf("warnings: %q", c.Warnings())
	}
	want := Default()
	want.Zone, want.User, want.Host, want.Key = "members.example.com", "alice", "laptop", "/etc/btmm-client/alice.key"
	want.Server = "192.0.2.1:53"
	want.source = "example.toml"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("example.toml gives\n%+v\nwant\n%+v", c, want)
	}
	if c.Domain() != "alice.members.example.com." || c.HostName() != "laptop.alice.members.example.com." {
		t.Errorf("Domain %q, HostName %q", c.Domain(), c.HostName())
	}
}

// TestExampleCommented uncomments every setting of example.toml: the file
// still parses, and the values it shows for settings with a fixed default
// are those defaults.
func TestExampleCommented(t *testing.T) {
	fakeSystem(t, "h", "")
	b, err := os.ReadFile("example.toml")
	if err != nil {
		t.Fatal(err)
	}
	setting := regexp.MustCompile(`(?m)^#([a-z_]+ = )`)
	uncommented := setting.ReplaceAll(b, []byte("$1"))
	if n := len(setting.FindAll(b, -1)); n != len(Names())-4 {
		t.Errorf("%d settings commented out, want all but zone, user, host and key", n)
	}
	c, err := Load(writeConfig(t, string(uncommented)))
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if c.StateDir != d.StateDir || c.Transport != d.Transport || c.TunnelPort != d.TunnelPort ||
		c.Lease != d.Lease || c.LLQLease != d.LLQLease || c.StatusSocket != d.StatusSocket || c.LogLevel != d.LogLevel {
		t.Errorf("example.toml's commented values are not the defaults:\n%+v\n%+v", c, d)
	}
	// Every setting is in the example, documented.
	for _, name := range Names() {
		if !regexp.MustCompile(`(?m)^#?` + name + ` = `).Match(b) {
			t.Errorf("example.toml does not show %s", name)
		}
	}
}

func TestFullFile(t *testing.T) {
	fakeSystem(t, "sys", "nameserver 192.0.2.1\n")
	path := writeConfig(t, `
zone = "Members.Example.com"
user = "Alice"
host = "desk-1"
key = "keys/alice.key"          # relative: to the file's directory
state_dir = "/srv/btmm"
server = "[2001:db8::53]:5353"
transport = "tls"
tls_ca = "ca.pem"
tls_server_name = "dns.example.com"
tunnel_port = 14500
lease = "1h"
llq_lease = "20m"
status_socket = "btmm.sock"
log_level = "debug"
esp_keylog = "debug/esp.keys"  # relative: to the file's directory
services = ["ssh", "http:8080 path=/"]
services_auto = true
push = "llq"
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	want := &Config{
		Zone: "Members.Example.com", User: "Alice", Host: "desk-1",
		Key: filepath.Join(dir, "keys/alice.key"), StateDir: "/srv/btmm",
		Server: "[2001:db8::53]:5353", Transport: "tls",
		TLSCA: filepath.Join(dir, "ca.pem"), TLSServerName: "dns.example.com",
		TunnelPort: 14500, Lease: time.Hour, LLQLease: 20 * time.Minute,
		StatusSocket: filepath.Join(dir, "btmm.sock"), LogLevel: "debug",
		ESPKeyLog:  filepath.Join(dir, "debug/esp.keys"),
		TunnelMode: "tun", SOCKSProxy: DefaultSOCKSProxy, HTTPProxy: DefaultHTTPProxy,
		Services: []string{"ssh", "http:8080 path=/"}, ServicesAuto: true, Push: "llq",
		source: path,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
	if c.Domain() != "alice.members.example.com." {
		t.Errorf("Domain() = %q", c.Domain())
	}
	if c.KeyPath() != "/srv/btmm/x25519.key" || c.Level().String() != "DEBUG" {
		t.Errorf("KeyPath %q, Level %v", c.KeyPath(), c.Level())
	}
}

func TestDefaults(t *testing.T) {
	fakeSystem(t, "Laptop.Local", "# resolv.conf\nsearch example.com\nnameserver 2001:db8::53\nnameserver 192.0.2.1\n")
	c, err := Load(writeConfig(t, "zone = \"members.example.com\"\nuser = \"alice\"\nkey = \"/k\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Host != "laptop" || c.Server != "[2001:db8::53]:53" {
		t.Errorf("host %q, server %q from the system", c.Host, c.Server)
	}
	if c.StateDir != "/var/lib/btmm-client" || c.Transport != "tls" || c.TunnelPort != 4500 ||
		c.Lease != 90*time.Minute || c.LLQLease != 2*time.Hour ||
		c.StatusSocket != "/run/btmm-client/status.sock" || c.LogLevel != "info" ||
		c.TLSCA != "" || c.TLSPin != "" || c.TLSServerName != "" || c.ESPKeyLog != "" {
		t.Errorf("defaults: %+v", c)
	}

	// Nothing from the system: host and server stay empty, and Validate
	// says where they would have come from.
	fakeSystem(t, "", "")
	c, err = Load(writeConfig(t, "zone = \"members.example.com\"\nuser = \"alice\"\nkey = \"/k\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if got := fields(err); !slices.Equal(got, []string{"host", "server"}) {
		t.Errorf("errors for %v (%v), want host and server", got, err)
	}

	// A host name that is not a valid label: the error says it came from
	// the system.
	fakeSystem(t, "my_laptop", "nameserver 192.0.2.1")
	c, _ = Load(writeConfig(t, "zone = \"members.example.com\"\nuser = \"alice\"\nkey = \"/k\"\n"))
	if err := c.Validate(); !strings.Contains(fmtErr(err), "system's host name") {
		t.Errorf("error %v does not blame the system's host name", err)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestLoadErrors(t *testing.T) {
	fakeSystem(t, "h", "")
	for _, tc := range []struct {
		name, text, want string
	}{
		{"not TOML", "zone = \"a\"\nuser = \n", ":2:"},
		{"unknown setting", "zone = \"a\"\nzoen = \"b\"\n", `unknown setting "zoen"`},
		{"table", "[tls]\nca = \"x\"\n", "unknown setting"},
		{"wrong type", "tunnel_port = \"4500\"\n", "tunnel_port"},
		{"bad duration", "lease = \"90 minutes\"\n", "90 minutes"},
		{"bare number lease", "lease = 5400\n", "lease: write a duration as a string"},
		{"bare number llq_lease", "llq_lease = 7200\n", "llq_lease: write a duration"},
		{"duplicate", "zone = \"a\"\nzone = \"b\"\n", "zone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			c, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Load = %+v, %v; want an error naming %s and saying %q", c, err, path, tc.want)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// valid is a configuration that passes Validate.
func valid() *Config {
	c := Default()
	c.Zone, c.User, c.Host, c.Key, c.Server = "members.example.com", "alice", "laptop", "/etc/btmm-client/alice.key", "192.0.2.1:53"
	return c
}

func TestValidateErrors(t *testing.T) {
	if err := valid().Validate(); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a", 63)
	for _, tc := range []struct {
		name   string
		change func(*Config)
		fields []string
	}{
		{"no zone", func(c *Config) { c.Zone = "" }, []string{"zone"}},
		{"root zone", func(c *Config) { c.Zone = "." }, []string{"zone"}},
		{"bad zone", func(c *Config) { c.Zone = "members..example.com" }, []string{"zone"}},
		{"leading dot zone", func(c *Config) { c.Zone = ".example.com" }, []string{"zone"}},
		{"no user", func(c *Config) { c.User = "" }, []string{"user"}},
		{"user with dot", func(c *Config) { c.User = "al.ice" }, []string{"user"}},
		{"user with underscore", func(c *Config) { c.User = "al_ice" }, []string{"user"}},
		{"user too long", func(c *Config) { c.User = long + "a" }, []string{"user"}},
		{"no host", func(c *Config) { c.Host = "" }, []string{"host"}},
		{"host with hyphen at the end", func(c *Config) { c.Host = "laptop-" }, []string{"host"}},
		{"host with space", func(c *Config) { c.Host = "my laptop" }, []string{"host"}},
		{"names too long", func(c *Config) { c.Host, c.User, c.Zone = long, long, long+"."+long }, []string{"zone"}},
		{"no key", func(c *Config) { c.Key = "" }, []string{"key"}},
		{"no state_dir", func(c *Config) { c.StateDir = "" }, []string{"state_dir"}},
		{"no server", func(c *Config) { c.Server = "" }, []string{"server"}},
		{"server without port", func(c *Config) { c.Server = "192.0.2.1" }, []string{"server"}},
		{"server port 0", func(c *Config) { c.Server = "192.0.2.1:0" }, []string{"server"}},
		{"server port too big", func(c *Config) { c.Server = "192.0.2.1:65536" }, []string{"server"}},
		{"server without host", func(c *Config) { c.Server = ":53" }, []string{"server"}},
		{"bad transport", func(c *Config) { c.Transport = "quic" }, []string{"transport"}},
		{"bad tunnel mode", func(c *Config) { c.TunnelMode = "kernel" }, []string{"tunnel_mode"}},
		{"unknown service without port", func(c *Config) { c.Services = []string{"ssh", "ipp"} }, []string{"services"}},
		{"two bad services", func(c *Config) { c.Services = []string{"ssh:0", "http k=1 k=2"} }, []string{"services", "services"}},
		{"a type twice", func(c *Config) { c.Services = []string{"http", "http:8080"} }, []string{"services"}},
		{"bad push", func(c *Config) { c.Push = "both" }, []string{"push"}},
		{"dns-push without TLS", func(c *Config) { c.Push, c.Transport = "dns-push", "tcp" }, []string{"push"}},
		{"forward with a TUN device", func(c *Config) { c.Forward = "22" }, []string{"forward"}},
		{"proxy off loopback", func(c *Config) { c.TunnelMode, c.SOCKSProxy = "userspace", "0.0.0.0:1080" }, []string{"socks_proxy"}},
		{"proxy not an address", func(c *Config) { c.TunnelMode, c.HTTPProxy = "userspace", "localhost:8080" }, []string{"http_proxy"}},
		{"bad forward port", func(c *Config) { c.TunnelMode, c.Forward = "userspace", "22, ssh, 70000" }, []string{"forward", "forward"}},
		{"pin and CA", func(c *Config) {
			c.TLSCA, c.TLSPin = "/ca.pem", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
		}, []string{"tls_pin"}},
		{"bad pin", func(c *Config) { c.TLSPin = "AAAA" }, []string{"tls_pin"}},
		{"TLS settings without TLS", func(c *Config) {
			c.Transport, c.TLSCA, c.TLSPin, c.TLSServerName = "udp", "/ca.pem", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "dns.example.com"
		}, []string{"tls_ca", "tls_pin", "tls_server_name"}},
		{"bad server name", func(c *Config) { c.TLSServerName = "a..b" }, []string{"tls_server_name"}},
		{"tunnel_port 0", func(c *Config) { c.TunnelPort = 0 }, []string{"tunnel_port"}},
		{"tunnel_port too big", func(c *Config) { c.TunnelPort = 65536 }, []string{"tunnel_port"}},
		{"unknown esp_suites", func(c *Config) { c.ESPSuites = "AES-256-GCM, 3DES" }, []string{"esp_suites"}},
		{"esp_suites twice", func(c *Config) { c.ESPSuites = "aes-256-gcm,AES-256-GCM" }, []string{"esp_suites"}},
		{"lease too short", func(c *Config) { c.Lease = 29 * time.Second }, []string{"lease"}},
		{"lease too long", func(c *Config) { c.Lease = 25 * time.Hour }, []string{"lease"}},
		{"negative llq_lease", func(c *Config) { c.LLQLease = -time.Hour }, []string{"llq_lease"}},
		{"no status_socket", func(c *Config) { c.StatusSocket = "" }, []string{"status_socket"}},
		{"bad log_level", func(c *Config) { c.LogLevel = "verbose" }, []string{"log_level"}},
		{"esp_keylog is the TSIG key", func(c *Config) { c.ESPKeyLog = "/etc/btmm-client/./alice.key" }, []string{"esp_keylog"}},
		{"esp_keylog is the host key", func(c *Config) { c.ESPKeyLog = c.KeyPath() }, []string{"esp_keylog"}},
		{"esp_keylog is the CA file", func(c *Config) { c.TLSCA, c.ESPKeyLog = "/ca.pem", "/ca.pem" }, []string{"esp_keylog"}},
		{"esp_keylog is the status socket", func(c *Config) { c.ESPKeyLog = c.StatusSocket }, []string{"esp_keylog"}},
		{"esp_keylog is a directory", func(c *Config) { c.ESPKeyLog = "/var/tmp/" }, []string{"esp_keylog"}},
		{"several at once", func(c *Config) { c.User, c.TunnelPort, c.LogLevel = "", -1, "loud" }, []string{"user", "tunnel_port", "log_level"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.change(c)
			err := c.Validate()
			if got := fields(err); !slices.Equal(got, tc.fields) {
				t.Fatalf("errors for %v (%v), want %v", got, err, tc.fields)
			}
			for _, f := range tc.fields {
				if !strings.Contains(err.Error(), "config: "+f+": ") {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
		})
	}
}

func TestValidateNamesFile(t *testing.T) {
	fakeSystem(t, "h", "nameserver 192.0.2.1")
	path := writeConfig(t, "zone = \"members.example.com\"\nuser = \"alice\"\nkey = \"/k\"\ntunnel_port = 70000\n")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); fmtErr(err) != "config: "+path+": tunnel_port: 70000 is not a port from 1 to 65535" {
		t.Errorf("error %q", err)
	}
	// After an override, the error names the command line.
	c.Set("tunnel_port", "0")
	if err := c.Validate(); !strings.HasPrefix(fmtErr(err), "config: --set: tunnel_port: ") {
		t.Errorf("error %q", err)
	}
}

// services and push: --set takes the services comma-separated, and each
// configured service's error names it.
func TestServicesSettings(t *testing.T) {
	c := valid()
	if err := c.Apply(Overrides{"services=ssh, http:8080 path=/,rfb", "services_auto=true", "push=dns-push"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s := c.ServiceList()
	if len(s) != 3 || s[1].Type != "_http._tcp" || s[1].Port != 8080 || s[1].TXT[0] != "path=/" || !c.ServicesAuto || c.Push != "dns-push" {
		t.Errorf("services %+v, auto %v, push %q", s, c.ServicesAuto, c.Push)
	}
	if err := c.Set("services_auto", "maybe"); err == nil {
		t.Error("services_auto=maybe taken")
	}
	c.Services = []string{"ipp"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `services: "ipp": "ipp" is not a well-known service`) {
		t.Errorf("error %v", err)
	}
}

func TestWarnings(t *testing.T) {
	c := valid()
	c.Lease, c.LLQLease = 30*time.Minute, 15*time.Minute
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("RFC 6281's minimums warn: %q", w)
	}
	c.Lease, c.LLQLease = time.Minute, 3*time.Hour
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 2 || !strings.HasPrefix(w[0], "lease 1m0s") || !strings.HasPrefix(w[1], "llq_lease 3h0m0s") {
		t.Errorf("warnings %q", w)
	}
}

func TestSet(t *testing.T) {
	fakeSystem(t, "sys-host", "nameserver 192.0.2.1")
	c, err := Load(writeConfig(t, "zone = \"members.example.com\"\nkey = \"/k\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	var o Overrides
	for _, s := range []string{"user=alice", "host=laptop", "lease=45m", "tunnel_port=4501", "key=rel/alice.key", "log_level=debug", "lease=50m"} {
		if err := o.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	if o.String() != "user=alice host=laptop lease=45m tunnel_port=4501 key=rel/alice.key log_level=debug lease=50m" {
		t.Errorf("String() = %q", o.String())
	}
	if err := c.Apply(o); err != nil {
		t.Fatal(err)
	}
	if c.User != "alice" || c.Host != "laptop" || c.Lease != 50*time.Minute || c.TunnelPort != 4501 || c.Key != "rel/alice.key" || c.LogLevel != "debug" {
		t.Errorf("after overrides: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}

	for _, s := range []string{"nosuch=1", "lease", "=x"} {
		if err := o.Set(s); err == nil {
			t.Errorf("Overrides.Set(%q) took it", s)
		}
	}
	for _, kv := range [][2]string{{"nosuch", "1"}, {"tunnel_port", "many"}, {"lease", "90"}, {"llq_lease", "soon"}} {
		if err := c.Set(kv[0], kv[1]); err == nil {
			t.Errorf("Set(%q, %q) took it", kv[0], kv[1])
		}
	}
	if err := c.Apply(Overrides{"no equals sign"}); err == nil {
		t.Error("Apply took an override without =")
	}
	// Every setting can be set.
	for _, name := range Names() {
		value := map[string]string{"tunnel_port": "1", "lease": "1h", "llq_lease": "1h", "services_auto": "true"}[name]
		if value == "" {
			value = "x"
		}
		if err := c.Set(name, value); err != nil {
			t.Errorf("Set(%q): %v", name, err)
		}
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	alice := keyfile.Key{Name: "alice.members.example.com.", Algorithm: "hmac-sha256.", Secret: "UDhU78txoPVuHQkxSoAUx0Ik1Yx5CMtMERcIhq0y8ys="}
	bob := keyfile.Key{Name: "bob.members.example.com.", Algorithm: "hmac-sha256.", Secret: "AAAA"}
	both := filepath.Join(dir, "both.key")
	os.WriteFile(both, keyfile.Format([]keyfile.Key{bob, alice}), 0o600)
	onlyBob := filepath.Join(dir, "bob.key")
	os.WriteFile(onlyBob, keyfile.Format([]keyfile.Key{bob}), 0o600)
	broken := filepath.Join(dir, "broken.key")
	os.WriteFile(broken, []byte("key \"alice.members.example.com.\" {\n\talgorithm hmac-sha256;\n"), 0o600)
	empty := filepath.Join(dir, "empty.key")
	os.WriteFile(empty, []byte("# nothing\n"), 0o600)

	c := valid()
	c.User, c.Zone = "Alice", "Members.Example.COM."
	c.Key = both
	k, err := c.LoadKey()
	if err != nil {
		t.Fatal(err)
	}
	if k.Name != alice.Name || k.Secret != alice.Secret || k.Algorithm != alice.Algorithm {
		t.Errorf("LoadKey = %+v", k)
	}

	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.key"), "no such file"},
		{onlyBob, `has no key named "alice.members.example.com." (it has only "bob.members.example.com.")`},
		{empty, "(it has no keys)"},
		{broken, "broken.key:"},
		{"", "required"},
	} {
		c.Key = tc.path
		_, err := c.LoadKey()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "key" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("key file %q: error %v, want one about key saying %q", tc.path, err, tc.want)
		}
	}
}

func TestESPKeyLog(t *testing.T) {
	fakeSystem(t, "h", "nameserver 192.0.2.1")
	base := "zone = \"members.example.com\"\nuser = \"alice\"\nkey = \"/k\"\n"
	c, err := Load(writeConfig(t, base))
	if err != nil {
		t.Fatal(err)
	}
	if c.ESPKeyLog != "" {
		t.Errorf("esp_keylog is on by default: %q", c.ESPKeyLog)
	}
	path := writeConfig(t, base+"esp_keylog = \"/var/tmp/esp.keys\"\n")
	if c, err = Load(path); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.ESPKeyLog != "/var/tmp/esp.keys" {
		t.Fatalf("esp_keylog %q, %v", c.ESPKeyLog, err)
	}
	// The command line wins, and an empty value turns it off.
	if err := c.Set("esp_keylog", "other.keys"); err != nil || c.ESPKeyLog != "other.keys" {
		t.Errorf("Set: %q, %v", c.ESPKeyLog, err)
	}
	if err := c.Set("esp_keylog", ""); err != nil || c.ESPKeyLog != "" {
		t.Errorf("Set empty: %q, %v", c.ESPKeyLog, err)
	}
	// An error about a key log from the command line names the command line.
	c.Set("esp_keylog", "/k")
	if err := c.Validate(); !strings.HasPrefix(fmtErr(err), "config: --set: esp_keylog: \"/k\" is the TSIG key file") {
		t.Errorf("error %q", err)
	}
	if _, err := Load(writeConfig(t, base+"esp_keylog = true\n")); err == nil || !strings.Contains(err.Error(), "esp_keylog") {
		t.Errorf("esp_keylog = true: %v", err)
	}
}
