package keyfile

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

const (
	secret32 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	secret16 = "ZGVmZ2hpamtsbW5vcHFycw=="
	secret48 = "yMnKy8zNzs/Q0dLT1NXW19jZ2tvc3d7f4OHi4+Tl5ufo6err7O3u7/Dx8vP09fb3" // has '/'
)

// tsigKeygen is what "tsig-keygen -a hmac-sha256 alice.members.example.com."
// prints, byte for byte: tabs, quoted name and secret, "};".
const tsigKeygen = "key \"alice.members.example.com.\" {\n" +
	"\talgorithm hmac-sha256;\n" +
	"\tsecret \"" + secret32 + "\";\n" +
	"};\n"

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Key
	}{
		{"empty", "", nil},
		{"whitespace", " \n\t\r\n", nil},
		{"only comments", "# a\n// b\n/* c\n d */\n", nil},
		{
			"tsig-keygen",
			tsigKeygen,
			[]Key{{Name: "alice.members.example.com.", Algorithm: dns.HmacSHA256, Secret: secret32, Line: 1}},
		},
		{
			"no final newline",
			strings.TrimSuffix(tsigKeygen, "\n"),
			[]Key{{Name: "alice.members.example.com.", Algorithm: dns.HmacSHA256, Secret: secret32, Line: 1}},
		},
		{
			"many keys and all comment styles",
			"# shell comment\n" +
				tsigKeygen +
				"// C++ comment\n" +
				"/* block\n" +
				"   comment */\n" +
				"key bob.members.example.com {\n" +
				"    algorithm HMAC-MD5.SIG-ALG.REG.INT; # trailing\n" +
				"    secret \"" + secret16 + "\"; // trailing\n" +
				"}; /* trailing */\n" +
				"KEY \"Carol.Example.\" { Algorithm hmac-sha512.; Secret " + secret48 + "; };\n",
			[]Key{
				{Name: "alice.members.example.com.", Algorithm: dns.HmacSHA256, Secret: secret32, Line: 2},
				{Name: "bob.members.example.com.", Algorithm: dns.HmacMD5, Secret: secret16, Line: 9},
				{Name: "carol.example.", Algorithm: dns.HmacSHA512, Secret: secret48, Line: 13},
			},
		},
		{
			"every algorithm name",
			"key a1 { algorithm hmac-md5; secret " + secret16 + "; };\n" +
				"key a2 { algorithm hmac-md5.sig-alg.reg.int.; secret " + secret16 + "; };\n" +
				"key a3 { algorithm hmac-sha1; secret " + secret16 + "; };\n" +
				"key a4 { algorithm hmac-sha224; secret " + secret16 + "; };\n" +
				"key a5 { algorithm \"hmac-sha256\"; secret " + secret16 + "; };\n" +
				"key a6 { algorithm Hmac-Sha384; secret " + secret16 + "; };\n" +
				"key a7 { algorithm hmac-sha512; secret " + secret16 + "; };\n",
			[]Key{
				{Name: "a1.", Algorithm: dns.HmacMD5, Secret: secret16, Line: 1},
				{Name: "a2.", Algorithm: dns.HmacMD5, Secret: secret16, Line: 2},
				{Name: "a3.", Algorithm: dns.HmacSHA1, Secret: secret16, Line: 3},
				{Name: "a4.", Algorithm: dns.HmacSHA224, Secret: secret16, Line: 4},
				{Name: "a5.", Algorithm: dns.HmacSHA256, Secret: secret16, Line: 5},
				{Name: "a6.", Algorithm: dns.HmacSHA384, Secret: secret16, Line: 6},
				{Name: "a7.", Algorithm: dns.HmacSHA512, Secret: secret16, Line: 7},
			},
		},
		{
			"fields in either order, statement split over lines",
			"key\n\"x.example\"\n{\nsecret\n\"" + secret16 + "\"\n;\nalgorithm\nhmac-sha1\n;\n}\n;\n",
			[]Key{{Name: "x.example.", Algorithm: dns.HmacSHA1, Secret: secret16, Line: 1}},
		},
		{
			"comment markers inside quotes and a lone slash",
			"key \"a/b#c{d}e.example\" { algorithm hmac-sha1; secret \"" + secret48 + "\"; };\n" +
				"key a/b { algorithm hmac-sha1; secret \"" + secret16 + "\"; };\n",
			[]Key{
				{Name: "a/b#c{d}e.example.", Algorithm: dns.HmacSHA1, Secret: secret48, Line: 1},
				{Name: "a/b.", Algorithm: dns.HmacSHA1, Secret: secret16, Line: 2},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.in), "test.keys")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	ok := "key a.example {\n\talgorithm hmac-sha256;\n\tsecret \"" + secret32 + "\";\n};\n" // lines 1-4
	tests := []struct {
		name string
		in   string
		line int
		msg  string // substring of ParseError.Msg
	}{
		{"unterminated quote", ok + "key \"b.example {\n\talgorithm hmac-sha256;\n", 5, "unterminated quoted string"},
		{"unterminated quote at EOF", ok + "key \"b.example", 5, "unterminated quoted string"},
		{"unterminated block comment", ok + "\n/* one\ntwo\n", 6, "unterminated /* comment"},
		{"missing ; after value", "key a {\n\talgorithm hmac-sha256\n\tsecret \"" + secret32 + "\";\n};\n", 2, "missing ';' after algorithm"},
		{"missing ; after }", "key a {\n\talgorithm hmac-sha256;\n\tsecret \"" + secret32 + "\";\n}\n" + ok, 4, "missing ';' after '}'"},
		{"missing ; at EOF", "key a {\n\talgorithm hmac-sha256;\n\tsecret \"" + secret32 + "\";\n}\n\n", 4, "missing ';' after '}' (found end of file)"},
		{"missing } at EOF", ok + "key b {\n\talgorithm hmac-sha256;\n\tsecret \"" + secret32 + "\";\n", 7, "missing '}' to close key \"b.\" of line 5"},
		{"missing } before next key", ok + "key b {\n\talgorithm hmac-sha256;\n\tsecret \"" + secret32 + "\";\n" + ok, 8, `unknown field "key"`},
		{"bad base64", ok + "key b {\n\talgorithm hmac-sha256;\n\tsecret \"YQ\";\n};\n", 7, "secret is not base64"},
		{"non-base64 byte", ok + "key b {\n\talgorithm hmac-sha256;\n\tsecret \"YQ==\rYQ==\";\n};\n", 7, "secret is not base64"},
		{"empty secret", ok + "key b {\n\talgorithm hmac-sha256;\n\tsecret \"\";\n};\n", 7, "secret is empty"},
		{"duplicate key", ok + "\nkey A.Example. {\n\talgorithm hmac-sha1;\n\tsecret \"" + secret16 + "\";\n};\n", 6, `duplicate key "a.example." (first defined at line 1)`},
		{"unknown algorithm", ok + "key b {\n\talgorithm hmac-foo;\n\tsecret \"" + secret32 + "\";\n};\n", 6, `unknown algorithm "hmac-foo"`},
		{"truncated algorithm", "key b {\n\talgorithm hmac-sha256-128;\n\tsecret \"" + secret32 + "\";\n};\n", 2, `unknown algorithm "hmac-sha256-128"`},
		{"unknown field", ok + "key b {\n\talgorithm hmac-sha256;\n\tsecret \"" + secret32 + "\";\n\tfoo bar;\n};\n", 8, `unknown field "foo" in key "b."`},
		{"duplicate field", "key b {\n\talgorithm hmac-sha256;\n\talgorithm hmac-sha1;\n};\n", 3, "duplicate algorithm"},
		{"missing algorithm", ok + "\nkey b {\n\tsecret \"" + secret32 + "\";\n};\n", 6, `key "b." has no algorithm`},
		{"missing secret", ok + "\nkey b {\n\talgorithm hmac-sha256;\n};\n", 6, `key "b." has no secret`},
		{"unknown statement", ok + "options {\n\tdirectory \"/tmp\";\n};\n", 5, `unknown statement "options"`},
		{"garbage", "hello world\n", 1, `unknown statement "hello"`},
		{"binary garbage", ok + "\x00\x01\x02", 5, "unexpected control character 0x00"},
		{"stray semicolon", ok + ";\n", 5, "expected a key statement, found ';'"},
		{"quoted keyword", "\"key\" a { algorithm hmac-sha1; secret \"" + secret16 + "\"; };\n", 1, "expected a key statement"},
		{"missing name", "key {\n", 1, `expected a key name after "key", found '{'`},
		{"missing {", "key a\nalgorithm hmac-sha1;\n", 2, `expected '{' after key name "a.", found "algorithm"`},
		{"invalid name", "key \"a..b\" { algorithm hmac-sha1; secret \"" + secret16 + "\"; };\n", 1, "invalid key name"},
		{"root name", "key \".\" { algorithm hmac-sha1; secret \"" + secret16 + "\"; };\n", 1, "invalid key name"},
		{"escaped name", "key \"a\\.b\" { algorithm hmac-sha1; secret \"" + secret16 + "\"; };\n", 1, `contains '\\'`},
		{"space in name", "key \"a b\" { algorithm hmac-sha1; secret \"" + secret16 + "\"; };\n", 1, "not printable ASCII"},
		{"missing value", "key a {\n\talgorithm ;\n};\n", 2, "expected a value after algorithm"},
		// BIND takes "//" and "#" inside an unquoted word as the start
		// of a comment; we refuse rather than guess.
		{"comment inside word", "key a {\n\talgorithm hmac-sha1;\n\tsecret ab//cd;\n};\n", 3, "put it in double quotes"},
		{"hash inside word", "key a# {\n", 1, "put it in double quotes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := Parse(strings.NewReader(tt.in), "users.keys")
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want error", keys)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse error %v (%T) is not a *ParseError", err, err)
			}
			if pe.File != "users.keys" || pe.Line != tt.line || !strings.Contains(pe.Msg, tt.msg) {
				t.Errorf("Parse error %q, want users.keys:%d: ...%s...", err, tt.line, tt.msg)
			}
			if keys != nil {
				t.Errorf("Parse returned keys %+v with an error", keys)
			}
		})
	}
}

func TestParseErrorFormat(t *testing.T) {
	_, err := Parse(strings.NewReader("\n\n\n\n\n\nkey a {\n\talgorithm hmac-foo;\n"), "users.keys")
	if got, want := err.Error(), `users.keys:8: unknown algorithm "hmac-foo"`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestParseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.keys")
	if err := os.WriteFile(path, []byte(tsigKeygen+"key b { algorithm x; };\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ParseFile(path)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != path || pe.Line != 5 {
		t.Errorf("ParseFile error = %v, want %s:5: ...", err, path)
	}

	if _, err := ParseFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ParseFile of a missing file: %v, want ErrNotExist", err)
	}
}

func TestFormat(t *testing.T) {
	keys := []Key{
		{Name: "alice.members.example.com.", Algorithm: dns.HmacSHA256, Secret: secret32},
		{Name: "bob.", Algorithm: dns.HmacMD5, Secret: secret16},
	}
	want := tsigKeygen + "\n" +
		"key \"bob.\" {\n\talgorithm hmac-md5;\n\tsecret \"" + secret16 + "\";\n};\n"
	got := Format(keys)
	if string(got) != want {
		t.Errorf("Format:\n%s\nwant:\n%s", got, want)
	}
	back, err := Parse(strings.NewReader(string(got)), "formatted")
	if err != nil {
		t.Fatal(err)
	}
	keys[0].Line, keys[1].Line = 1, 6
	if !reflect.DeepEqual(back, keys) {
		t.Errorf("Parse(Format(keys)) = %+v, want %+v", back, keys)
	}
	if got := Format(nil); len(got) != 0 {
		t.Errorf("Format(nil) = %q, want empty", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(tsigKeygen)
	f.Add("")
	f.Add("# c\n// c\n/* c */\n")
	f.Add("key bob.example { algorithm HMAC-MD5.SIG-ALG.REG.INT.; secret \"" + secret16 + "\"; };\n" + tsigKeygen)
	f.Add("key \"a/b#c{d}e\" { algorithm hmac-sha1; secret " + secret48 + "; };")
	f.Add("key \"a\\\"b\" { algorithm hmac-sha1; secret \"" + secret16 + "\"; };")
	f.Add("key \"unterminated")
	f.Add("/* unterminated")
	f.Add("options { directory \"/\"; };")
	f.Fuzz(func(t *testing.T, in string) {
		keys, err := Parse(strings.NewReader(in), "fuzz")
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "fuzz" || pe.Line < 1 {
				t.Fatalf("error %v (%T) is not a *ParseError with a line", err, err)
			}
			return
		}
		for _, k := range keys {
			if k.Name == "" || k.Name != dns.CanonicalName(k.Name) {
				t.Errorf("key %+v: name is not canonical", k)
			}
			if _, ok := bindAlgorithm[k.Algorithm]; !ok {
				t.Errorf("key %+v: unknown algorithm", k)
			}
			if b, err := base64.StdEncoding.DecodeString(k.Secret); err != nil || len(b) == 0 {
				t.Errorf("key %+v: secret does not decode: %v", k, err)
			}
		}

		out := Format(keys)
		back, err := Parse(strings.NewReader(string(out)), "formatted")
		if err != nil {
			t.Fatalf("Parse(Format(keys)): %v\n%s", err, out)
		}
		if len(back) != len(keys) {
			t.Fatalf("Parse(Format(keys)) gave %d keys, want %d", len(back), len(keys))
		}
		for i := range keys {
			a, b := keys[i], back[i]
			a.Line, b.Line = 0, 0
			if a != b {
				t.Errorf("key %d: round trip gave %+v, want %+v", i, b, a)
			}
		}
	})
}
