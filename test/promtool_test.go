package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// checkMetrics runs `promtool check metrics` (Prometheus's linter for the
// text exposition format) on a scraped HTTP response's body and fails the
// test on each complaint. promtool is taken from PATH, else bin/promtool
// (where .ci/deps puts it, out of Debian's prometheus package); without it
// the check is skipped, or fails under CI.
func checkMetrics(t *testing.T, what string, response []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		promtool = filepath.Join(repoTop(t), "bin", "promtool")
		if _, err := os.Stat(promtool); err != nil {
			msg := "promtool is missing (.ci/deps puts it in bin/promtool, from Debian's prometheus package): " + what + " not checked with promtool check metrics"
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Log(msg)
			return
		}
	}
	_, body, ok := bytes.Cut(response, []byte("\r\n\r\n"))
	if !ok || len(body) == 0 {
		t.Errorf("%s: no HTTP body in\n%s", what, response)
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("promtool check metrics on %s: %v\n%s\n%s", what, err, out, body)
	}
}
