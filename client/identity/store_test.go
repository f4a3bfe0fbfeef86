package identity

import (
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadOrNew: the first start draws the identity and keeps it; later
// starts get the same, whatever the interface is now; a file that is not
// an identity stops the start with an error naming it.
func TestLoadOrNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity")
	mac, _ := net.ParseMAC("00:22:69:8e:34:2a")
	first, err := LoadOrNew(path, "eth0", mac, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v %v", fi, err)
	}
	other, _ := net.ParseMAC("00:11:22:33:44:55")
	again, err := LoadOrNew(path, "wlan0", other, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if again.ULA != first.ULA || again.Label != first.Label || again.EUI64 != first.EUI64 || again.Interface != "wlan0" {
		t.Fatalf("second start: %+v, first %+v", again, first)
	}
	for _, bad := range []string{
		"ula 2001:db8::1\nlabel " + first.Label + "\n",
		"ula " + first.ULA.String() + "\nlabel AutoTunnel-00-00-00-00-00-00-00-01\n",
		"nonsense\n",
	} {
		os.WriteFile(path, []byte(bad), 0o600)
		if _, err := LoadOrNew(path, "eth0", mac, rand.Reader); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: error %v, want one naming the file", bad, err)
		}
	}
}
