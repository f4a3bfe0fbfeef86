package main

import (
	"strings"
	"testing"
)

// TestSummarise: passing tests print nothing of their own, a failing
// test prints its output, the package lines pass through, and the skipped
// tests come back with their reasons; the summary line names them and
// what would run them.
func TestSummarise(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"p","Test":"TestOK"}`,
		`{"Action":"output","Package":"p","Test":"TestOK","Output":"=== RUN   TestOK\n"}`,
		`{"Action":"output","Package":"p","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}`,
		`{"Action":"pass","Package":"p","Test":"TestOK"}`,
		`{"Action":"output","Package":"p","Test":"TestBad","Output":"    x_test.go:9: it broke\n"}`,
		`{"Action":"output","Package":"p","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}`,
		`{"Action":"fail","Package":"p","Test":"TestBad"}`,
		`{"Action":"output","Package":"p","Test":"TestLab","Output":"=== RUN   TestLab\n"}`,
		`{"Action":"output","Package":"p","Test":"TestLab","Output":"    lab.go:60: network lab: missing root (the lab makes network namespaces); tshark (Debian package tshark)\n"}`,
		`{"Action":"output","Package":"p","Test":"TestLab","Output":"--- SKIP: TestLab (0.00s)\n"}`,
		`{"Action":"skip","Package":"p","Test":"TestLab"}`,
		`{"Action":"output","Package":"p","Output":"FAIL\tp\t0.01s\n"}`,
		`{"Action":"output","Package":"q","Output":"?   \tq\t[no test files]\n"}`,
		`{"Action":"skip","Package":"q"}`,
		`not json: a build error`,
	}, "\n")
	var out strings.Builder
	skipped := summarise(strings.NewReader(in), &out)
	got := out.String()
	for _, want := range []string{"it broke", "--- FAIL: TestBad", "FAIL\tp\t0.01s", "not json: a build error", "[no test files]"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "TestOK") {
		t.Errorf("a passing test's lines are printed:\n%s", got)
	}
	if len(skipped) != 1 || skipped[0].name != "TestLab" || !strings.HasPrefix(skipped[0].reason, "network lab: missing root") {
		t.Fatalf("skipped %+v", skipped)
	}
	line := skipLine(skipped)
	for _, want := range []string{"skipped: 1 tests: TestLab (network lab: missing root", "sudo make test", "Debian packages"} {
		if !strings.Contains(line, want) {
			t.Errorf("summary %q lacks %q", line, want)
		}
	}
	if skipLine(nil) != "skipped: none" {
		t.Errorf("no skips: %q", skipLine(nil))
	}
}
