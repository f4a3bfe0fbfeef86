package btmm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/adminapi"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// startAdmin serves b's admin API on a socket in a temporary directory and
// returns a client of it.
func startAdmin(t *testing.T, b *Btmm) *adminapi.Client {
	t.Helper()
	b.adminPath = filepath.Join(t.TempDir(), "admin.sock")
	if err := acquireAdmin(b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { releaseAdmin(b.adminPath) })
	return adminapi.NewClient(b.adminPath)
}

func TestAdminUsers(t *testing.T) {
	b := newTestBtmm(t,
		"laptop.alice.members.example.com. 60 IN AAAA fd00::1",
		"_ssh._tcp.laptop.alice.members.example.com. 60 IN SRV 0 0 22 laptop.alice.members.example.com.",
		"desk.bob.members.example.com. 60 IN AAAA fd00::2",
	)
	b.keys = map[string]keyfile.Key{"carol." + zone: {Name: "carol." + zone, Algorithm: dns.HmacSHA256, Secret: "c2VjcmV0"}}
	c := startAdmin(t, b)
	ctx := context.Background()

	// Only the server's own user may use the socket.
	if fi, err := os.Stat(b.adminPath); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("admin socket: %v, %v; want a socket with mode 0600", fi.Mode(), err)
	}

	alice, err := c.Add(ctx, adminapi.AddRequest{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if alice.Name != "alice."+zone || alice.Algorithm != "hmac-sha256" || alice.Secret == "" {
		t.Fatalf("added %+v", alice)
	}
	if keys := b.Keys("ALICE." + zone); len(keys) != 1 || keys[0].Secret != alice.Secret {
		t.Errorf("the new user's keys: %v", keys)
	}
	if !b.isUser("alice." + zone) {
		t.Error("the new user's domain is not a user's domain")
	}
	if _, err := c.Add(ctx, adminapi.AddRequest{Name: "alice." + zone}); !isStatus(err, 409) {
		t.Errorf("adding alice twice: %v, want 409", err)
	}
	if _, err := c.Add(ctx, adminapi.AddRequest{Name: "carol"}); !isStatus(err, 409) {
		t.Errorf("adding a user of the key file: %v, want 409", err)
	}
	for _, bad := range []string{"a.b", "other.example.", "", "x..y"} {
		if _, err := c.Add(ctx, adminapi.AddRequest{Name: bad}); !isStatus(err, 400) {
			t.Errorf("adding %q: %v, want 400", bad, err)
		}
	}
	if _, err := c.Add(ctx, adminapi.AddRequest{Name: "dave", Algorithm: "hmac-md5", Secret: "c2VjcmV0c2VjcmV0c2VjcmV0MTI="}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Add(ctx, adminapi.AddRequest{Name: "bob"}); err != nil {
		t.Fatal(err)
	}

	var names []string
	if err := c.List(ctx, func(u adminapi.User) error { names = append(names, u.Name+" "+u.Source); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	want := []string{"alice." + zone + " store", "bob." + zone + " store", "carol." + zone + " keyfile", "dave." + zone + " store"}
	if !slices.Equal(names, want) {
		t.Errorf("list = %v, want %v", names, want)
	}

	// Rotation: both keys during the overlap, the new one first.
	rotated, err := c.Rotate(ctx, "alice", adminapi.RotateRequest{Overlap: adminapi.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Secret == alice.Secret || rotated.PreviousUntil == nil {
		t.Fatalf("rotated: %+v", rotated)
	}
	if keys := b.Keys("alice." + zone); len(keys) != 2 || keys[0].Secret != rotated.Secret || keys[1].Secret != alice.Secret {
		t.Errorf("keys during the overlap: %v", keys)
	}
	b.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if keys := b.Keys("alice." + zone); len(keys) != 1 || keys[0].Secret != rotated.Secret {
		t.Errorf("keys after the overlap: %v", keys)
	}
	b.now = time.Now
	if _, err := c.Rotate(ctx, "nobody", adminapi.RotateRequest{}); !adminapi.IsNotFound(err) {
		t.Errorf("rotating a user that does not exist: %v, want 404", err)
	}

	// Revocation: the key goes, and the records, but no one else's.
	r, err := c.Revoke(ctx, "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	if r.RecordNames != 2 {
		t.Errorf("revoking alice emptied %d names, want 2", r.RecordNames)
	}
	if keys := b.Keys("alice." + zone); len(keys) != 0 {
		t.Errorf("a revoked user's keys: %v", keys)
	}
	if rrs, _, _ := b.store.Lookup("laptop.alice." + zone); len(rrs) != 0 {
		t.Errorf("a revoked user's records are still there: %v", rrs)
	}
	if rrs, _, _ := b.store.Lookup("desk.bob." + zone); len(rrs) != 1 {
		t.Errorf("bob's records went with alice's: %v", rrs)
	}
	r, err = c.Revoke(ctx, "bob", true)
	if err != nil || !r.LeftToExpire || r.RecordNames != 0 {
		t.Fatalf("revoking bob, keeping records: %+v, %v", r, err)
	}
	if rrs, _, _ := b.store.Lookup("desk.bob." + zone); len(rrs) != 1 {
		t.Errorf("bob's records were removed despite records=keep: %v", rrs)
	}
	if _, err := c.Revoke(ctx, "alice", false); !adminapi.IsNotFound(err) {
		t.Errorf("revoking alice again: %v, want 404", err)
	}
	if _, err := c.Revoke(ctx, "carol", false); !isStatus(err, 409) {
		t.Errorf("revoking a user of the key file: %v, want 409", err)
	}
}

// TestAdminImport: a key file's keys become users, those there already
// (in the store, in the key file) are skipped, and a
// file with a key outside the zone changes nothing.
func TestAdminImport(t *testing.T) {
	b := newTestBtmm(t)
	b.keys = map[string]keyfile.Key{"carol." + zone: {Name: "carol." + zone, Algorithm: dns.HmacSHA256, Secret: "c2VjcmV0"}}
	c := startAdmin(t, b)
	ctx := context.Background()
	if _, err := c.Add(ctx, adminapi.AddRequest{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	var file []keyfile.Key
	for _, n := range []string{"alice", "bob", "carol", "dave"} {
		file = append(file, keyfile.Key{Name: n + "." + zone, Algorithm: dns.HmacSHA1, Secret: "c2VjcmV0"})
	}
	r, err := c.Import(ctx, bytes.NewReader(keyfile.Format(file)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Added != 2 || r.Existed != 2 {
		t.Errorf("import: %+v, want 2 added (bob, dave) and 2 skipped", r)
	}
	if keys := b.Keys("dave." + zone); len(keys) != 1 || keys[0].Algorithm != dns.HmacSHA1 {
		t.Errorf("an imported user's keys: %v", keys)
	}
	bad := append(file[:1:1], keyfile.Key{Name: "x.y." + zone, Algorithm: dns.HmacSHA1, Secret: "c2VjcmV0"}, keyfile.Key{Name: "erin." + zone, Algorithm: dns.HmacSHA1, Secret: "c2VjcmV0"})
	if _, err := c.Import(ctx, bytes.NewReader(keyfile.Format(bad))); !isStatus(err, 400) {
		t.Errorf("importing a key two labels down: %v, want 400", err)
	}
	if keys := b.Keys("erin." + zone); len(keys) != 0 {
		t.Error("a refused import added a user")
	}
}

// TestAdminSocketInUse: a second server does not take a live socket over,
// and a socket left by a dead one is replaced.
func TestAdminSocketInUse(t *testing.T) {
	b := newTestBtmm(t)
	startAdmin(t, b)
	if _, err := listenAdmin(b.adminPath); err == nil {
		t.Fatal("a second server took over a socket in use")
	}
	stale := filepath.Join(t.TempDir(), "stale.sock")
	a, err := listenAdmin(stale)
	if err != nil {
		t.Fatal(err)
	}
	a.ln.Close() // the socket file stays, as after kill -9
	a, err = listenAdmin(stale)
	if err != nil {
		t.Fatalf("a stale socket was not replaced: %v", err)
	}
	a.srv.Close()
}

func isStatus(err error, status int) bool {
	var se *adminapi.StatusError
	return errors.As(err, &se) && se.Status == status
}
