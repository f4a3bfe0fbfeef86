package setuptest

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

// words parses "words A B ..." into its arguments, and fails on "bad".
func words(c *caddy.Controller) ([]string, error) {
	c.Next()
	args := c.RemainingArgs()
	for _, a := range args {
		if a == "bad" {
			return nil, errors.New("bad word")
		}
	}
	return args, nil
}

func TestRunPasses(t *testing.T) {
	var checked []string
	Run(t, words, []Case[[]string]{
		{Input: "words a b", Check: func(t testing.TB, got []string) { checked = append(checked, strings.Join(got, ",")) }},
		{Name: "no check", Input: "words"},
		{Input: "words bad", WantErr: "bad word"},
	})
	if len(checked) != 1 || checked[0] != "a,b" {
		t.Errorf("Check saw %q, want the parsed arguments once", checked)
	}
}

// recorder is a test whose failures are recorded rather than reported.
type recorder struct {
	testing.TB
	failures []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}
func (r *recorder) Error(args ...any) { r.failures = append(r.failures, fmt.Sprint(args...)) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func TestCaseFails(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		c          Case[[]string]
	}{
		{"error expected, none", `want one containing "bad word"`, Case[[]string]{Input: "words a", WantErr: "bad word"}},
		{"another error expected", `error bad word, want one containing "missing"`, Case[[]string]{Input: "words bad", WantErr: "missing"}},
		{"no error expected", "unexpected error bad word", Case[[]string]{Input: "words bad"}},
		{"check fails", "checked", Case[[]string]{Input: "words a", Check: func(t testing.TB, _ []string) { t.Error("checked") }}},
	} {
		r := &recorder{TB: t}
		done := make(chan struct{})
		// Fatalf ends the goroutine it runs on, as testing's does.
		go func() {
			defer close(done)
			check(r, words, tc.c)
		}()
		<-done
		if len(r.failures) != 1 || !strings.Contains(r.failures[0], tc.want) {
			t.Errorf("%s: failures %q, want one saying %q", tc.name, r.failures, tc.want)
		}
	}
}
