// Command testsummary runs go test with the arguments it is given and
// prints what go test prints without -v (each package's result, and the
// whole output of each test that failed), then one line that names every
// test that was skipped and why, and how to run them: a test that needs
// root or a Debian tool skips when they are missing, and a newcomer should
// see that at the end of `make test`, not find it in a log. It exits as go
// test did.
//
//	go run ./test/cmd/testsummary -p 1 -count=1 ./...
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	cmd := exec.Command("go", append([]string{"test", "-json"}, os.Args[1:]...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	skipped := summarise(out, os.Stdout)
	err = cmd.Wait()
	fmt.Println(skipLine(skipped))
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		os.Exit(exit.ExitCode())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
}

// skip is one skipped test and the reason it gave.
type skip struct {
	name, reason string
}

// summarise copies the events of r to w as go test without -v would print
// them, and returns the skipped tests.
func summarise(r io.Reader, w io.Writer) []skip {
	output := make(map[string][]string) // test output so far, by package and test
	var skipped []skip
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Fprintln(w, sc.Text()) // not JSON: a build error, say
			continue
		}
		key := e.Package + " " + e.Test
		switch {
		case e.Test == "" && e.Action == "output":
			// The package's own lines: ok, FAIL, build errors.
			if !strings.HasPrefix(e.Output, "=== ") && !strings.HasPrefix(e.Output, "PASS\n") {
				fmt.Fprint(w, e.Output)
			}
		case e.Action == "output":
			output[key] = append(output[key], e.Output)
		case e.Action == "fail":
			for _, line := range output[key] {
				fmt.Fprint(w, line)
			}
			delete(output, key)
		case e.Action == "skip" && e.Test == "":
			// A package with no test files.
		case e.Action == "skip":
			skipped = append(skipped, skip{name: e.Test, reason: reason(output[key])})
			delete(output, key)
		case e.Action == "pass":
			delete(output, key)
		}
	}
	return skipped
}

// reason is the message a test gave with t.Skip: the lines after its
// "--- SKIP" line, or before it if there are none.
func reason(lines []string) string {
	var msg []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		// "file_test.go:21: message"
		if _, after, ok := strings.Cut(l, ": "); ok && strings.Contains(l[:len(l)-len(after)], ".go:") {
			l = after
		}
		msg = append(msg, l)
	}
	if len(msg) == 0 {
		return "no reason given"
	}
	return strings.Join(msg, " ")
}

// skipLine is the summary: none skipped, or each with its reason, and
// what would run them.
func skipLine(skipped []skip) string {
	if len(skipped) == 0 {
		return "skipped: none"
	}
	var parts []string
	root, tools := false, false
	for _, s := range skipped {
		parts = append(parts, s.name+" ("+s.reason+")")
		root = root || strings.Contains(s.reason, "root")
		tools = tools || strings.Contains(s.reason, "Debian package")
	}
	var how []string
	if tools {
		how = append(how, "install the Debian packages named (sudo .ci/deps installs them all)")
	}
	if root {
		how = append(how, "run sudo make test")
	}
	if len(how) == 0 {
		how = append(how, "see each reason")
	}
	return fmt.Sprintf("skipped: %d tests: %s; to run them, %s", len(skipped), strings.Join(parts, "; "), strings.Join(how, ", then "))
}
