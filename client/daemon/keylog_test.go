package daemon

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestKeyLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "esp.keys")
	os.WriteFile(path, []byte("# earlier\n"), 0o600)
	k, warn, err := openKeyLog(path)
	if err != nil || warn != "" {
		t.Fatal(err, warn)
	}
	// Concurrent writers, as the peers' goroutines are: every write stays
	// whole, after what the file held.
	const writers, writes = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				line := fmt.Sprintf("%d %d %s\n%d %d %s\n", w, i, strings.Repeat("a", 300), w, i, strings.Repeat("b", 300))
				if _, err := k.Write([]byte(line)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !bytes.HasPrefix(b, []byte("# earlier\n")) {
		t.Errorf("the file was not appended to")
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")[1:]
	if len(lines) != 2*writers*writes {
		t.Fatalf("%d lines, want %d", len(lines), 2*writers*writes)
	}
	for i := 0; i < len(lines); i += 2 {
		var w1, i1, w2, i2 int
		var a, bb string
		fmt.Sscanf(lines[i], "%d %d %s", &w1, &i1, &a)
		fmt.Sscanf(lines[i+1], "%d %d %s", &w2, &i2, &bb)
		if w1 != w2 || i1 != i2 || a != strings.Repeat("a", 300) || bb != strings.Repeat("b", 300) {
			t.Fatalf("writes interleaved at line %d", i+2)
		}
	}

	// A new file is made 0600; an existing one readable by others draws a
	// warning.
	fresh := filepath.Join(t.TempDir(), "new.keys")
	k, _, err = openKeyLog(fresh)
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new key log: %v, %v", fi.Mode(), err)
	}
	os.Chmod(fresh, 0o644)
	if k, warn, err = openKeyLog(fresh); err != nil || !strings.Contains(warn, "0644") {
		t.Errorf("warning %q, %v", warn, err)
	}
	k.Close()
	if _, _, err := openKeyLog(filepath.Join(t.TempDir(), "no", "such", "dir")); err == nil || !strings.Contains(err.Error(), "esp_keylog") {
		t.Errorf("missing directory: %v", err)
	}
}
