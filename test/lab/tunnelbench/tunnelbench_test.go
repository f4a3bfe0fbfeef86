package tunnelbench

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/openbtmm/btmm/test/lab"
)

// TestRun is a short `make bench-tunnel`: both tunnels carry an iperf3
// stream across the two NATs (Run checks that the bytes went through each
// tunnel) and the report ends with the ratio. The figures themselves are
// for the benchmark, not asserted here.
func TestRun(t *testing.T) {
	lab.Require(t, "iperf3", "iperf3")
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(filepath.Dir(file), "..", "..", "..", "bin")
	if _, err := os.Stat(filepath.Join(bin, "wireguard-go")); err != nil {
		t.Fatalf("bin/wireguard-go is missing (make build makes it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	res, err := Run(ctx, Options{Bin: bin, Duration: 2 * time.Second, Runs: 1, Out: &out, Logf: t.Logf})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, runs := range [][]float64{res.Btmm, res.BtmmChaCha, res.WireGuard, res.BtmmBidir, res.BtmmChaChaBidir, res.WireGuardBidir, res.Userspace, res.UserspaceBidir} {
		if len(runs) != 1 || runs[0] <= 0 {
			t.Fatalf("result %+v", res)
		}
	}
	for _, line := range []string{"\nratio ", "\nratio both ways "} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("the report has no line %q", line[1:])
		}
	}
	if !strings.Contains(out.String(), "(ESP, ChaCha20-Poly1305)") {
		t.Errorf("the ChaCha20-Poly1305 runs did not use it")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
