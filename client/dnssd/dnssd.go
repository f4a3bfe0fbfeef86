// Package dnssd is what the client needs of DNS-Based Service Discovery
// (RFC 6763) in the user's domain: the services a host publishes (parsed
// from the configuration's "NAME[:PORT] [key=value ...]" lines, with the
// well-known names' types and ports), the names they live at, and the TCP
// ports a Linux host listens on (for services_auto).
package dnssd

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Service is one service a host publishes.
type Service struct {
	// Type is the service type, "_ssh._tcp".
	Type string
	// Port is the TCP or UDP port it listens on.
	Port uint16
	// TXT holds the key=value strings of its TXT record, in order; none
	// is published as the single empty string (RFC 6763 §6.1).
	TXT []string
}

// WellKnown is a service the configuration may name by a short name, with
// its type and default port.
type WellKnown struct {
	Name string // as in the configuration: "ssh"
	Type string // "_ssh._tcp"
	Port uint16
}

// Known are the well-known services, also those services_auto looks for
// (by port).
var Known = []WellKnown{
	{"ssh", "_ssh._tcp", 22},
	{"sftp-ssh", "_sftp-ssh._tcp", 22},
	{"smb", "_smb._tcp", 445},
	{"rfb", "_rfb._tcp", 5900},
	{"http", "_http._tcp", 80},
	{"https", "_https._tcp", 443},
	{"afp", "_afpovertcp._tcp", 548},
}

// known returns the well-known service named name.
func known(name string) (WellKnown, bool) {
	i := slices.IndexFunc(Known, func(k WellKnown) bool { return k.Name == name })
	if i < 0 {
		return WellKnown{}, false
	}
	return Known[i], true
}

// ServicesDomain is the name of the service-type enumeration (RFC 6763
// §9) under domain: _services._dns-sd._udp.DOMAIN.
func ServicesDomain(domain string) string {
	return "_services._dns-sd._udp." + dns.Fqdn(domain)
}

// TypeName is TYPE.DOMAIN, where a type's instances are listed.
func TypeName(typ, domain string) string { return dns.Fqdn(typ + "." + dns.Fqdn(domain)) }

// InstanceName is INSTANCE.TYPE.DOMAIN, with instance's dots and
// backslashes escaped (RFC 6763 §4.3).
func InstanceName(instance, typ, domain string) string {
	r := strings.NewReplacer(`\`, `\\`, `.`, `\.`)
	return r.Replace(instance) + "." + TypeName(typ, domain)
}

// SplitInstance splits an instance's name into its instance label
// (unescaped) and its type ("_ssh._tcp"), given the domain it is in.
func SplitInstance(name, domain string) (instance, typ string, ok bool) {
	labels := dns.SplitDomainName(name)
	dl := dns.CountLabel(dns.Fqdn(domain))
	if len(labels) != dl+3 || !dns.IsSubDomain(dns.Fqdn(domain), dns.Fqdn(name)) {
		return "", "", false
	}
	typ = labels[1] + "." + labels[2]
	if !strings.HasPrefix(labels[1], "_") || (labels[2] != "_tcp" && labels[2] != "_udp") {
		return "", "", false
	}
	var b strings.Builder
	l := labels[0]
	for i := 0; i < len(l); i++ {
		if l[i] == '\\' && i+1 < len(l) {
			if i+3 < len(l) && isDigit(l[i+1]) && isDigit(l[i+2]) && isDigit(l[i+3]) {
				n, _ := strconv.Atoi(l[i+1 : i+4])
				b.WriteByte(byte(n))
				i += 3
				continue
			}
			i++
		}
		b.WriteByte(l[i])
	}
	return b.String(), typ, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// ParseType reads a service type as a user writes it: a well-known name
// ("ssh"), an RFC 6335 service name (taken as TCP), or the full type
// ("_ssh._tcp", "_ssh._tcp."), and returns the full type, lowercase.
func ParseType(s string) (string, error) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if k, ok := known(s); ok {
		return k.Type, nil
	}
	if name, proto, ok := strings.Cut(s, "."); ok {
		if !strings.HasPrefix(name, "_") || (proto != "_tcp" && proto != "_udp") {
			return "", fmt.Errorf("%q is not a service type such as _ssh._tcp", s)
		}
		if err := checkServiceName(name[1:]); err != nil {
			return "", err
		}
		return s, nil
	}
	if err := checkServiceName(s); err != nil {
		return "", err
	}
	return "_" + s + "._tcp", nil
}

// checkServiceName checks an RFC 6335 §5.1 service name: 1 to 15
// letters, digits and hyphens, with a letter, no hyphen at either end and
// no two hyphens together.
func checkServiceName(s string) error {
	bad := func(why string) error { return fmt.Errorf("%q is not a service name (RFC 6335): %s", s, why) }
	switch {
	case s == "":
		return bad("empty")
	case len(s) > 15:
		return bad("longer than 15 characters")
	case s[0] == '-' || s[len(s)-1] == '-':
		return bad("starts or ends with a hyphen")
	case strings.Contains(s, "--"):
		return bad("two hyphens together")
	}
	letter := false
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z':
			letter = true
		case '0' <= r && r <= '9' || r == '-':
		default:
			return bad(fmt.Sprintf("has %q; use letters, digits and hyphens", r))
		}
	}
	if !letter {
		return bad("has no letter")
	}
	return nil
}

// Parse reads one configured service, "NAME[:PORT] [key=value ...]":
// NAME is a well-known name (ssh, sftp-ssh, smb, rfb, http, https, afp:
// their type and default port), another RFC 6335 service name (TCP; the
// port is then required), or a full type such as _ipp._tcp; the TXT
// record's strings follow, separated by spaces (RFC 6763 §6: a key of
// printable ASCII without "=", at most 255 octets a string; "key" alone
// is a boolean attribute).
func Parse(spec string) (Service, error) {
	fields := strings.Fields(spec)
	if len(fields) == 0 {
		return Service{}, errors.New("empty: write NAME[:PORT] [key=value ...], such as \"ssh\" or \"http:8080 path=/\"")
	}
	name, port, hasPort := strings.Cut(fields[0], ":")
	var s Service
	typ, err := ParseType(name)
	if err != nil {
		return Service{}, err
	}
	s.Type = typ
	if k, ok := known(strings.ToLower(name)); ok {
		s.Port = k.Port
	}
	if hasPort {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return Service{}, fmt.Errorf("%q: port %q is not from 1 to 65535", fields[0], port)
		}
		s.Port = uint16(p)
	}
	if s.Port == 0 {
		return Service{}, fmt.Errorf("%q is not a well-known service (%s): give its port, as %s:PORT", name, knownNames(), name)
	}
	seen := map[string]bool{}
	total := 0
	for _, kv := range fields[1:] {
		key, _, _ := strings.Cut(kv, "=")
		switch {
		case key == "":
			return Service{}, fmt.Errorf("TXT %q has no key before \"=\" (RFC 6763 §6.4)", kv)
		case len(kv) > 255:
			return Service{}, fmt.Errorf("TXT %q is longer than 255 octets", kv)
		case seen[strings.ToLower(key)]:
			return Service{}, fmt.Errorf("TXT key %q given twice (RFC 6763 §6.4)", key)
		}
		for _, r := range key {
			if r < 0x20 || r > 0x7e {
				return Service{}, fmt.Errorf("TXT key %q has %q: printable ASCII only (RFC 6763 §6.4)", key, r)
			}
		}
		seen[strings.ToLower(key)] = true
		total += 1 + len(kv)
		s.TXT = append(s.TXT, kv)
	}
	if total > 8900 {
		return Service{}, errors.New("TXT record longer than 8900 octets (RFC 6763 §6.2)")
	}
	return s, nil
}

func knownNames() string {
	var n []string
	for _, k := range Known {
		n = append(n, k.Name)
	}
	return strings.Join(n, ", ")
}

// ParseAll parses every spec and checks that no type comes twice: a
// host publishes one instance of each type, named after the host.
func ParseAll(specs []string) ([]Service, error) {
	var out []Service
	var errs []error
	types := map[string]string{}
	for _, spec := range specs {
		s, err := Parse(spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", spec, err))
			continue
		}
		if prev, dup := types[s.Type]; dup {
			errs = append(errs, fmt.Errorf("%q: type %s already given by %q: a host publishes one service of each type", spec, s.Type, prev))
			continue
		}
		types[s.Type] = spec
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

// Merge returns configured followed by those of found whose type is not
// configured: a configured service wins over a detected one.
func Merge(configured, found []Service) []Service {
	out := slices.Clone(configured)
	for _, f := range found {
		if !slices.ContainsFunc(out, func(s Service) bool { return s.Type == f.Type }) {
			out = append(out, f)
		}
	}
	return out
}

// Equal says whether a and b are the same services in the same order.
func Equal(a, b []Service) bool {
	return slices.EqualFunc(a, b, func(x, y Service) bool {
		return x.Type == y.Type && x.Port == y.Port && slices.Equal(x.TXT, y.TXT)
	})
}

// EscapeTXT returns s as github.com/miekg/dns holds a TXT string: in
// presentation form, with backslash, double quote and every octet outside
// printable ASCII escaped (\\, \", \DDD), so that the octets on the wire
// are s's own.
func EscapeTXT(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// UnescapeTXT undoes EscapeTXT: the octets of a TXT string as miekg/dns
// holds it.
func UnescapeTXT(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
				n, _ := strconv.Atoi(s[i+1 : i+4])
				b.WriteByte(byte(n))
				i += 3
				continue
			}
			i++
			c = s[i]
		}
		b.WriteByte(c)
	}
	return b.String()
}
