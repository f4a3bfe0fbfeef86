// Package keyfile reads and writes TSIG keys in the format BIND uses: the
// "key" statements that tsig-keygen prints and that named.conf and
// nsupdate -k read.
//
//	key "alice.members.example.com." {
//		algorithm hmac-sha256;
//		secret "base64...";
//	};
//
// A file may hold any number of key statements and the three comment
// styles of named.conf (#, // and /* */). Anything else, including other
// named.conf statements, is an error: a key file that says more than we
// understand is more likely a mistake than something to skip over.
//
// Parse and Format are pure: they do no I/O beyond reading the given
// reader, so they are safe to fuzz and to call from tests.
package keyfile

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/miekg/dns"
)

// Key is one TSIG key.
type Key struct {
	// Name is the key name, lowercase and fully qualified
	// (dns.CanonicalName), so that it can be compared directly with the
	// canonical form of the owner name of a TSIG record.
	Name string
	// Algorithm is the canonical miekg/dns name of the HMAC algorithm,
	// such as dns.HmacSHA256 ("hmac-sha256.").
	Algorithm string
	// Secret is the key in standard base64, as written in the file. It
	// is known to decode to at least one byte.
	Secret string
	// Line is the line on which the key statement starts.
	Line int
}

// ParseError is the error returned for a key file that cannot be parsed.
// It names the file and the line at fault, in the FILE:LINE form that
// editors and compilers use, so that an operator can jump straight to it.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// algorithms maps the algorithm names BIND accepts, lowercase and without
// the trailing dot, to miekg/dns's canonical names. hmac-md5 is the name
// BIND prints; the long form is the one on the wire (RFC 8945).
var algorithms = map[string]string{
	"hmac-md5":                 dns.HmacMD5,
	"hmac-md5.sig-alg.reg.int": dns.HmacMD5,
	"hmac-sha1":                dns.HmacSHA1,
	"hmac-sha224":              dns.HmacSHA224,
	"hmac-sha256":              dns.HmacSHA256,
	"hmac-sha384":              dns.HmacSHA384,
	"hmac-sha512":              dns.HmacSHA512,
}

// bindAlgorithm is the inverse of algorithms, giving the names Format
// writes: the ones tsig-keygen prints.
var bindAlgorithm = map[string]string{
	dns.HmacMD5:    "hmac-md5",
	dns.HmacSHA1:   "hmac-sha1",
	dns.HmacSHA224: "hmac-sha224",
	dns.HmacSHA256: "hmac-sha256",
	dns.HmacSHA384: "hmac-sha384",
	dns.HmacSHA512: "hmac-sha512",
}

// ParseFile reads the key file at path. Errors in its contents are
// *ParseError values naming path.
func ParseFile(path string) ([]Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parse(path, b)
}

// Parse reads key statements from r. filename is used only in error
// messages. Errors in the input are *ParseError values; an input with no
// key statements (empty, or only comments) gives no keys and no error.
func Parse(r io.Reader, filename string) ([]Key, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return parse(filename, b)
}

func parse(filename string, src []byte) ([]Key, error) {
	p := &parser{lx: newLexer(filename, src)}
	return p.file()
}

// parser is a recursive-descent parser over the lexer's tokens. The
// grammar is small enough that each token decides what must follow, so it
// needs no lookahead:
//
//	file  = { "key" value "{" { field } "}" ";" }
//	field = ( "algorithm" | "secret" ) value ";"
type parser struct {
	lx *lexer
}

func (p *parser) errorf(line int, format string, args ...any) error {
	return p.lx.errorf(line, format, args...)
}

// file parses the whole input.
func (p *parser) file() ([]Key, error) {
	var keys []Key
	seen := make(map[string]int) // key name -> line of its statement
	for {
		t, err := p.lx.next()
		if err != nil {
			return nil, err
		}
		switch {
		case t.kind == tokEOF:
			return keys, nil
		case t.kind == tokWord && strings.EqualFold(t.text, "key"):
			// Keywords are case-insensitive in named.conf.
		case t.kind == tokWord:
			return nil, p.errorf(t.line, "unknown statement %s; a key file holds only key statements", t)
		default:
			return nil, p.errorf(t.line, "expected a key statement, found %s", t)
		}
		k, err := p.key(t.line)
		if err != nil {
			return nil, err
		}
		// Names are canonical, so this also catches names that differ
		// only in case, which the DNS treats as the same key.
		if first, ok := seen[k.Name]; ok {
			return nil, p.errorf(k.Line, "duplicate key %q (first defined at line %d)", k.Name, first)
		}
		seen[k.Name] = k.Line
		keys = append(keys, k)
	}
}

// key parses the rest of a key statement whose keyword is on line.
func (p *parser) key(line int) (Key, error) {
	k := Key{Line: line}
	t, err := p.lx.next()
	if err != nil {
		return Key{}, err
	}
	if !t.isValue() {
		return Key{}, p.errorf(t.line, "expected a key name after \"key\", found %s", t)
	}
	if k.Name, err = p.name(t); err != nil {
		return Key{}, err
	}
	if t, err = p.lx.next(); err != nil {
		return Key{}, err
	}
	if t.kind != tokLBrace {
		return Key{}, p.errorf(t.line, "expected '{' after key name %q, found %s", k.Name, t)
	}

	for {
		t, err := p.lx.next()
		if err != nil {
			return Key{}, err
		}
		if t.kind == tokRBrace {
			if err := p.semi(t.line, "'}'"); err != nil {
				return Key{}, err
			}
			break
		}
		if t.kind == tokEOF {
			return Key{}, p.errorf(t.line, "unexpected end of file: missing '}' to close key %q of line %d", k.Name, line)
		}
		if t.kind != tokWord {
			return Key{}, p.errorf(t.line, "expected \"algorithm\" or \"secret\" in key %q, found %s", k.Name, t)
		}
		field := strings.ToLower(t.text)
		var dst *string
		switch field {
		case "algorithm":
			dst = &k.Algorithm
		case "secret":
			dst = &k.Secret
		default:
			return Key{}, p.errorf(t.line, "unknown field %s in key %q", t, k.Name)
		}
		if *dst != "" {
			return Key{}, p.errorf(t.line, "duplicate %s in key %q", field, k.Name)
		}
		v, err := p.lx.next()
		if err != nil {
			return Key{}, err
		}
		if !v.isValue() {
			return Key{}, p.errorf(v.line, "expected a value after %s, found %s", field, v)
		}
		if field == "algorithm" {
			*dst, err = p.algorithm(v)
		} else {
			*dst, err = p.secret(v)
		}
		if err != nil {
			return Key{}, err
		}
		if err := p.semi(v.line, field); err != nil {
			return Key{}, err
		}
	}

	// BIND has no default algorithm for a key statement, and a key
	// without a secret is useless; say which key and where it starts.
	if k.Algorithm == "" {
		return Key{}, p.errorf(line, "key %q has no algorithm", k.Name)
	}
	if k.Secret == "" {
		return Key{}, p.errorf(line, "key %q has no secret", k.Name)
	}
	return k, nil
}

// semi consumes the ';' that must follow what ended on line. A missing
// ';' is reported on that line, where it belongs, rather than on the line
// of whatever came next, which may be far below after comments.
func (p *parser) semi(line int, after string) error {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	if t.kind != tokSemi {
		return p.errorf(line, "missing ';' after %s (found %s)", after, t)
	}
	return nil
}

// name validates and canonicalizes a key name.
//
// Beyond being a domain name, a key name must be made of printable ASCII
// that miekg/dns prints without escapes. That keeps Name equal to the
// canonical form of the TSIG owner name miekg/dns unpacks from the wire
// (so "\065" and "a" cannot name the same key differently), and keeps
// Format's output trivially re-readable by BIND and by Parse.
func (p *parser) name(t token) (string, error) {
	for i := 0; i < len(t.text); i++ {
		c := t.text[i]
		switch {
		case c <= ' ' || c > '~':
			return "", p.errorf(t.line, "key name %q contains a byte 0x%02x that is not printable ASCII", t.text, c)
		case strings.IndexByte(`\'@;()"`, c) >= 0:
			return "", p.errorf(t.line, "key name %q contains %q", t.text, c)
		}
	}
	name := dns.CanonicalName(t.text)
	if _, ok := dns.IsDomainName(name); !ok || name == "." {
		return "", p.errorf(t.line, "invalid key name %q", t.text)
	}
	return name, nil
}

// algorithm maps a value to a miekg/dns algorithm name.
func (p *parser) algorithm(t token) (string, error) {
	a, ok := algorithms[strings.TrimSuffix(strings.ToLower(t.text), ".")]
	if !ok {
		return "", p.errorf(t.line, "unknown algorithm %q", t.text)
	}
	return a, nil
}

// secret checks that a value is standard base64 for a non-empty key.
func (p *parser) secret(t token) (string, error) {
	// encoding/base64 skips '\r' and '\n'; refuse them and anything else
	// outside the alphabet ourselves, so that Secret is exactly what a
	// peer will decode and Format can write it back unchanged.
	for i := 0; i < len(t.text); i++ {
		c := t.text[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=') {
			return "", p.errorf(t.line, "secret is not base64: unexpected %q", c)
		}
	}
	b, err := base64.StdEncoding.DecodeString(t.text)
	if err != nil {
		return "", p.errorf(t.line, "secret is not base64: %v", err)
	}
	if len(b) == 0 {
		return "", p.errorf(t.line, "secret is empty")
	}
	return t.text, nil
}

// Format writes keys in the format of tsig-keygen, one key statement
// after another, separated by blank lines. Parse reads the result back to
// the same keys (but for Line).
//
// Format does not validate: keys should be as Parse returns them. An
// Algorithm that is not a miekg/dns HMAC name is written as is, without
// its trailing dot, and Parse will then refuse it.
func Format(keys []Key) []byte {
	var b bytes.Buffer
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		alg, ok := bindAlgorithm[strings.ToLower(k.Algorithm)]
		if !ok {
			alg = quote(strings.TrimSuffix(k.Algorithm, "."))
		}
		fmt.Fprintf(&b, "key %s {\n\talgorithm %s;\n\tsecret %s;\n};\n", quote(k.Name), alg, quote(k.Secret))
	}
	return b.Bytes()
}

// quote puts s in double quotes the way BIND's lexer reads them back: a
// double quote is escaped with a backslash and nothing else is.
func quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// Algorithm returns the canonical miekg/dns name of an HMAC algorithm
// given in any spelling BIND accepts (hmac-sha256) or in miekg/dns's
// (hmac-sha256.), and whether it is one.
func Algorithm(name string) (string, bool) {
	canon, ok := algorithms[strings.TrimSuffix(strings.ToLower(name), ".")]
	return canon, ok
}

// BINDAlgorithm returns the name BIND's tools print for a canonical
// algorithm name (hmac-md5 for HMAC-MD5's long one).
func BINDAlgorithm(canon string) string {
	if n, ok := bindAlgorithm[canon]; ok {
		return n
	}
	return strings.TrimSuffix(canon, ".")
}
