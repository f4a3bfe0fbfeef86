package identity

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strings"
)

// LoadOrNew returns the host's identity kept at path, or makes one with
// New and keeps it there. RFC 4193 §3.2 has a Global ID drawn once and
// stored: a host keeps its tunnel address across restarts, so that its
// peers, which know it by that address and its key, let it back in even
// while the server that would tell them a new one is down. The identity
// stays when the primary interface changes; Interface is the current one.
func LoadOrNew(path, iface string, mac net.HardwareAddr, rnd io.Reader) (Identity, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		id, err := parseIdentity(string(b))
		if err != nil {
			return Identity{}, fmt.Errorf("identity: %s: %w (delete it to draw a new tunnel address)", path, err)
		}
		id.Interface = iface
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Identity{}, fmt.Errorf("identity: %w", err)
	}
	id, err := New(iface, mac, rnd)
	if err != nil {
		return Identity{}, err
	}
	text := fmt.Sprintf("ula %s\nlabel %s\n", id.ULA, id.Label)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return Identity{}, fmt.Errorf("identity: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return Identity{}, fmt.Errorf("identity: %w", err)
	}
	return id, nil
}

// parseIdentity reads what LoadOrNew writes, and checks that the two
// agree: the ULA's interface identifier is the modified EUI-64.
func parseIdentity(text string) (Identity, error) {
	var ula, label string
	for line := range strings.Lines(text) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch k {
		case "ula":
			ula = v
		case "label":
			label = v
		case "":
		default:
			return Identity{}, fmt.Errorf("unknown line %q", strings.TrimSpace(line))
		}
	}
	a, err := netip.ParseAddr(ula)
	if err != nil || !a.Is6() || a.As16()[0] != 0xfd {
		return Identity{}, fmt.Errorf("ula %q is not a unique local address (fd00::/8)", ula)
	}
	e, err := ParseLabel(label)
	if err != nil {
		return Identity{}, fmt.Errorf("label %q: %w", label, err)
	}
	u, iid := a.As16(), ModifiedEUI64(e)
	if [8]byte(u[8:]) != iid {
		return Identity{}, fmt.Errorf("ula %s does not end in the label's EUI-64 (%s)", ula, label)
	}
	return Identity{ULA: a, EUI64: e, Label: Label(e)}, nil
}
