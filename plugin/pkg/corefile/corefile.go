// Package corefile reads the block of a plugin's directive, so that each
// plugin's setup says only what its properties mean: the rules every
// directive here shares (a property given once, unless it is a list; an
// unknown property named; the directive used once per server block) are
// kept in one place.
package corefile

import (
	"errors"
	"strconv"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
)

// ErrUnknown, returned by a Properties callback, says the property is not
// one the directive knows; Properties reports it with its name.
var ErrUnknown = errors.New("unknown property")

// Properties reads the block of the directive under c's cursor,
//
//	DIRECTIVE ... {
//	    PROPERTY [ARGS...]
//	    ...
//	}
//
// handing each property to fn with its arguments, in order. A property
// given twice is an error, unless repeatable names it (a list, like
// btmm's ns lines); fn sees it first, so that a misspelt property is
// reported as unknown, not as repeated. The directive may be used once in
// its server block: a second use is plugin.ErrOnce. Properties returns the
// properties given, for defaults that depend on what was left out.
func Properties(c *caddy.Controller, fn func(prop string, args []string) error, repeatable ...string) (map[string]bool, error) {
	seen := make(map[string]bool)
	for c.NextBlock() {
		prop := c.Val()
		if err := fn(prop, c.RemainingArgs()); err != nil {
			if errors.Is(err, ErrUnknown) {
				return nil, c.Errf("unknown property %q", prop)
			}
			return nil, err
		}
		if seen[prop] && !isIn(prop, repeatable) {
			return nil, c.Errf("%s given more than once", prop)
		}
		seen[prop] = true
	}
	if c.Next() {
		// The dispenser holds every use of the directive in the block.
		return nil, plugin.ErrOnce
	}
	return seen, nil
}

// Nested reads the block that may follow a property's arguments, inside
// the directive's block,
//
//	PROPERTY ARGS... {
//	    SUB [ARGS...]
//	}
//
// handing each line to fn, with the same rules as Properties: each
// sub-property once, unknown ones named. Call it from a Properties
// callback; it does nothing if no block follows. (caddy's NextBlock reads
// one level only.)
func Nested(c *caddy.Controller, fn func(prop string, args []string) error) error {
	if !c.NextArg() {
		return nil
	}
	if c.Val() != "{" {
		return c.ArgErr()
	}
	seen := make(map[string]bool)
	for c.Next() {
		prop := c.Val()
		if prop == "}" {
			return nil
		}
		if err := fn(prop, c.RemainingArgs()); err != nil {
			if errors.Is(err, ErrUnknown) {
				return c.Errf("unknown property %q", prop)
			}
			return err
		}
		if seen[prop] {
			return c.Errf("%s given more than once", prop)
		}
		seen[prop] = true
	}
	return c.Err("a block opened with { is not closed")
}

// NoArgs reads the directive's name and refuses any argument after it,
// for a directive configured by its block alone.
func NoArgs(c *caddy.Controller) error {
	c.Next()
	if len(c.RemainingArgs()) != 0 {
		return c.ArgErr()
	}
	return nil
}

// TSIGRequired reads the arguments of a "tsig required|optional"
// property (llq, dns-push): whether unsigned clients are refused.
func TSIGRequired(c *caddy.Controller, args []string) (bool, error) {
	if len(args) != 1 || args[0] != "required" && args[0] != "optional" {
		return false, c.Errf("tsig is required or optional")
	}
	return args[0] == "required", nil
}

// PositiveInt reads the one argument of the property prop, a positive
// integer (a limit).
func PositiveInt(c *caddy.Controller, prop string, args []string) (int, error) {
	if len(args) != 1 {
		return 0, c.ArgErr()
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return 0, c.Errf("%s needs a positive integer, not %q", prop, args[0])
	}
	return n, nil
}

func isIn(s string, list []string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
