package demo

import (
	"bytes"
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/openbtmm/btmm/test/lab"
)

// TestDemo runs `make demo`'s story and checks that it tells what happened.
func TestDemo(t *testing.T) {
	lab.Require(t)
	_, file, _, _ := runtime.Caller(0)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := Run(ctx, Options{Bin: filepath.Join(filepath.Dir(file), "..", "..", "..", "bin"), Out: &out, Logf: t.Logf}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	story := out.String()
	t.Log("\n" + story)
	for _, want := range []string{"desktop (in hostA) is registered", "laptop sees its peer desktop", "desktop sees its peer laptop", "the pings go through the tunnel",
		"3 received", "enrolled with alice's signing key", "the same TCP connection carried on", "the laptop knew", "stopped cleanly", "The lab is gone"} {
		if !strings.Contains(story, want) {
			t.Errorf("the story does not tell %q", want)
		}
	}
}
