package daemon

import (
	"fmt"
	"os"
	"sync"
)

// keyLog is the ESP key log (config esp_keylog, run --esp-keylog): a file
// the tunnel appends the esp_sa lines of every new keypair to, for
// Wireshark. The tunnel writes each keypair with one Write, possibly from
// several peers' goroutines at once; mu keeps those writes whole.
type keyLog struct {
	mu sync.Mutex // guards f's writes
	f  *os.File
}

// openKeyLog opens path for appending, creating it with mode 0600. It
// returns, besides the log, a warning for a regular file that others may
// read (an existing file keeps its mode), or "".
func openKeyLog(path string) (*keyLog, string, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("esp_keylog: %w", err)
	}
	warn := ""
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 {
		warn = fmt.Sprintf("%s has mode %#o: others can read the keys written to it", path, fi.Mode().Perm())
	}
	return &keyLog{f: f}, warn, nil
}

func (k *keyLog) Write(b []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.f.Write(b)
}

func (k *keyLog) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.f.Close()
}
