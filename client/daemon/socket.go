package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// listenStatus opens the status socket, replacing a stale one left by a
// crash but never one that a running daemon still answers on.
func listenStatus(path string) (net.Listener, error) {
	if _, err := Fetch(path); err == nil {
		return nil, fmt.Errorf("another btmm-client is running (it answers on %s)", path)
	}
	os.Remove(path)
	// The default's directory (/run/btmm-client) is the packaged
	// service's runtime directory; run by hand, it may not exist yet.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	// Only the owner and its group may read the status: it names the
	// user's hosts and where they are.
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// serveStatus answers each connection with the status as one JSON
// document, until ctx ends.
func serveStatus(ctx context.Context, l net.Listener, status func() Status) error {
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		json.NewEncoder(c).Encode(status())
		c.Close()
	}
}

// Fetch asks the daemon listening on path for its status.
func Fetch(path string) (Status, error) {
	var s Status
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return s, fmt.Errorf("no btmm-client answers on %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewDecoder(c).Decode(&s); err != nil {
		return s, fmt.Errorf("reading the status from %s: %w", path, err)
	}
	return s, nil
}
