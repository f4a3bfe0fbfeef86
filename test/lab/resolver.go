package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// etcNetnsDir is where `ip netns exec NS` looks for files to bind-mount
// over their namesakes in /etc (/etc/netns/NS/resolv.conf over
// /etc/resolv.conf), in the mount namespace it makes for the command.
var etcNetnsDir = "/etc/netns"

// SetResolver gives a namespace its own DNS resolver configuration: it
// writes /etc/netns/NS/resolv.conf (NS the full name) with a nameserver
// line per server and the search domains, so that a program run there
// with Exec resolves names with those servers (ping, getent, iperf3: the
// C library reads /etc/resolv.conf). Programs run with Go or started in
// the namespace another way see the machine's /etc/resolv.conf. Calling
// it again replaces the file; no servers removes it. Close and Cleanup
// remove it, and New removes what a crashed lab with the same prefix
// left.
func (l *Lab) SetResolver(ns string, servers []netip.Addr, search ...string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab: closed")
	}
	short := strings.TrimPrefix(ns, l.Prefix)
	if !slices.Contains(l.Namespaces, short) {
		return fmt.Errorf("lab: no namespace %q", ns)
	}
	dir := filepath.Join(etcNetnsDir, l.NS(short))
	if len(servers) == 0 {
		return removeDir(dir)
	}
	var b strings.Builder
	b.WriteString("# written by the btmm network lab (test/lab SetResolver)\n")
	for _, s := range servers {
		if !s.IsValid() {
			return fmt.Errorf("lab: resolver for %s: invalid server address", ns)
		}
		fmt.Fprintf(&b, "nameserver %s\n", s.WithZone(""))
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	// Fail fast: the lab's internet is closed, a missing server never answers.
	b.WriteString("options timeout:1 attempts:2\n")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	tmp := filepath.Join(dir, ".resolv.conf.tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "resolv.conf")); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// removeResolvers removes the /etc/netns directories of the namespaces
// whose names start with prefix (what SetResolver wrote).
func removeResolvers(prefix string) error {
	dirs, err := filepath.Glob(filepath.Join(etcNetnsDir, prefix+"*"))
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	var errs []error
	for _, d := range dirs {
		errs = append(errs, removeDir(d))
	}
	return errors.Join(errs...)
}

func removeDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}
