// Package setuptest runs a plugin's Corefile parse over a table of
// snippets, the way CoreDNS's own setup tests do, so that each plugin's
// setup test is its table alone. It is for tests only.
package setuptest

import (
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

// Case is one Corefile snippet and what parsing it must give.
type Case[T any] struct {
	Name    string // the subtest's name; the input if empty
	Input   string // the directive and its block, as in a Corefile
	WantErr string // a part of the error, or "" for none
	// Check, if set, looks at what a snippet without error parsed to.
	Check func(t testing.TB, got T)
}

// Run parses each case's input with parse, on a controller for the dns
// server type, each in a subtest: a case with WantErr must fail with an
// error containing it, any other must succeed and pass its Check.
func Run[T any](t *testing.T, parse func(*caddy.Controller) (T, error), cases []Case[T]) {
	t.Helper()
	for _, tc := range cases {
		name := tc.Name
		if name == "" {
			name = tc.Input
		}
		t.Run(name, func(t *testing.T) { check(t, parse, tc) })
	}
}

func check[T any](t testing.TB, parse func(*caddy.Controller) (T, error), tc Case[T]) {
	t.Helper()
	got, err := parse(caddy.NewTestController("dns", tc.Input))
	if tc.WantErr != "" {
		if err == nil || !strings.Contains(err.Error(), tc.WantErr) {
			t.Fatalf("%q: error %v, want one containing %q", tc.Input, err, tc.WantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("%q: unexpected error %v", tc.Input, err)
	}
	if tc.Check != nil {
		tc.Check(t, got)
	}
}
