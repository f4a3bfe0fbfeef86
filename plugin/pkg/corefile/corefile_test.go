package corefile

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
)

// parse reads a block where "name" takes one argument, "alias" any number
// and may repeat, and "bad" is refused by its meaning.
func parse(input string) (lines []string, seen map[string]bool, err error) {
	c := caddy.NewTestController("dns", input)
	if err := NoArgs(c); err != nil {
		return nil, nil, err
	}
	seen, err = Properties(c, func(prop string, args []string) error {
		switch prop {
		case "name", "alias":
			if prop == "name" && len(args) != 1 {
				return c.ArgErr()
			}
			lines = append(lines, prop+" "+strings.Join(args, " "))
		case "bad":
			return fmt.Errorf("bad is bad")
		default:
			return ErrUnknown
		}
		return nil
	}, "alias")
	return lines, seen, err
}

func TestProperties(t *testing.T) {
	lines, seen, err := parse("d {\n name a\n alias b c\n alias d\n}")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"name a", "alias b c", "alias d"}; !slices.Equal(lines, want) {
		t.Errorf("properties %q, want %q in order", lines, want)
	}
	if !seen["name"] || !seen["alias"] || seen["bad"] {
		t.Errorf("seen %v, want name and alias", seen)
	}

	for _, tc := range []struct{ input, wantErr string }{
		{"d {\n name a\n name b\n}", "name given more than once"},
		{"d {\n nmae a\n}", `unknown property "nmae"`},
		// A misspelt property is named as such, even when repeated.
		{"d {\n nmae a\n nmae b\n}", `unknown property "nmae"`},
		{"d {\n bad\n}", "bad is bad"},
		{"d {\n name\n}", "Wrong argument count"},
		{"d extra {\n name a\n}", "Wrong argument count"},
		{"d {\n name a\n}\nd {\n name b\n}", "only be used once"},
		{"d\nd", "only be used once"},
	} {
		_, _, err := parse(tc.input)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%q: error %v, want one containing %q", tc.input, err, tc.wantErr)
		}
	}
}

func TestSecondUseIsErrOnce(t *testing.T) {
	// The error is CoreDNS's own, so that it reads as every other
	// directive's.
	if _, _, err := parse("d\nd"); !errors.Is(err, plugin.ErrOnce) {
		t.Errorf("error %v, want plugin.ErrOnce", err)
	}
}

func TestEmptyBlock(t *testing.T) {
	for _, input := range []string{"d", "d {\n}"} {
		lines, seen, err := parse(input)
		if err != nil || len(lines) != 0 || len(seen) != 0 {
			t.Errorf("%q: %q, %v, %v; want nothing", input, lines, seen, err)
		}
	}
}

// TestNested: a property's own block is read line by line, with the
// lines after it back in the outer block; its errors are named.
func TestNested(t *testing.T) {
	read := func(input string) ([]string, error) {
		c := caddy.NewTestController("dns", input)
		if err := NoArgs(c); err != nil {
			return nil, err
		}
		var lines []string
		_, err := Properties(c, func(prop string, args []string) error {
			lines = append(lines, prop+" "+strings.Join(args, " "))
			if prop != "outer" {
				return nil
			}
			return Nested(c, func(sub string, args []string) error {
				if sub == "bad" {
					return ErrUnknown
				}
				lines = append(lines, "  "+sub+" "+strings.Join(args, " "))
				return nil
			})
		})
		return lines, err
	}
	lines, err := read("d {\n before 1\n outer a b {\n  x 1\n  y 2 3\n }\n after 4\n}")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"before 1", "outer a b", "  x 1", "  y 2 3", "after 4"}; !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
	if lines, err := read("d {\n outer a\n after 4\n}"); err != nil || len(lines) != 2 {
		t.Errorf("without a nested block: %q %v", lines, err)
	}
	for input, wantErr := range map[string]string{
		"d {\n outer a {\n  bad 1\n }\n}":      `unknown property "bad"`,
		"d {\n outer a {\n  x 1\n  x 2\n }\n}": "x given more than once",
	} {
		if _, err := read(input); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: error %v, want %q", input, err, wantErr)
		}
	}
}

func TestTSIGRequiredAndPositiveInt(t *testing.T) {
	c := caddy.NewTestController("dns", "x")
	for args, want := range map[string]bool{"required": true, "optional": false} {
		if got, err := TSIGRequired(c, []string{args}); err != nil || got != want {
			t.Errorf("tsig %s: %v, %v", args, got, err)
		}
	}
	for _, args := range [][]string{nil, {"maybe"}, {"required", "optional"}} {
		if _, err := TSIGRequired(c, args); err == nil || !strings.Contains(err.Error(), "required or optional") {
			t.Errorf("tsig %q: %v", args, err)
		}
	}
	if n, err := PositiveInt(c, "limit", []string{"7"}); err != nil || n != 7 {
		t.Errorf("limit 7: %d, %v", n, err)
	}
	for _, args := range [][]string{{"0"}, {"-1"}, {"many"}} {
		if _, err := PositiveInt(c, "limit", args); err == nil || !strings.Contains(err.Error(), "limit needs a positive integer") {
			t.Errorf("limit %q: %v", args, err)
		}
	}
	if _, err := PositiveInt(c, "limit", nil); err == nil || !strings.Contains(err.Error(), "Wrong argument count") {
		t.Errorf("limit with no argument: %v", err)
	}
}
