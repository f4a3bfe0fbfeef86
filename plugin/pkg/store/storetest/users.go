package storetest

import (
	"encoding/base64"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// userTests are Run's tests of store.Users, which every engine
// implements beside store.Store.
var userTests = []struct {
	name string
	test func(t *testing.T, e Engine)
}{
	{"UsersPutGetDelete", testUsersPutGetDelete},
	{"UsersSurviveReopen", testUsersSurviveReopen},
	{"UsersChangesAreEvents", testUsersChangesAreEvents},
	{"DeleteTree", testDeleteTree},
}

func users(t *testing.T, s store.Store) store.Users {
	t.Helper()
	u, ok := s.(store.Users)
	if !ok {
		t.Fatalf("%T does not implement store.Users", s)
	}
	return u
}

// Key is a user key of the test zone for the user label name, with a
// secret made from seed.
func Key(name string, seed byte) keyfile.Key {
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = seed + byte(i)
	}
	return keyfile.Key{Name: name + "." + zone, Algorithm: dns.HmacSHA256, Secret: base64.StdEncoding.EncodeToString(secret)}
}

func testUsersPutGetDelete(t *testing.T, e Engine) {
	s := newOpener(t, e).store()
	us := users(t, s)
	alice := store.User{Key: Key("alice", 1)}
	if _, ok, err := us.User(alice.Name()); err != nil || ok {
		t.Fatalf("User before PutUser: found %v, %v", ok, err)
	}
	if err := us.PutUser(alice); err != nil {
		t.Fatal(err)
	}
	got, ok, err := us.User(alice.Name())
	if err != nil || !ok || got.Key != alice.Key || got.Previous != nil {
		t.Fatalf("User = %+v, %v, %v; want %+v", got, ok, err, alice)
	}
	// A rotation keeps the previous key until the overlap ends.
	until := time.Unix(1_800_086_400, 0)
	prev := alice.Key
	rotated := store.User{Key: Key("alice", 2), Previous: &prev, Until: until}
	if err := us.PutUser(rotated); err != nil {
		t.Fatal(err)
	}
	got, _, _ = us.User(alice.Name())
	if got.Key != rotated.Key || got.Previous == nil || *got.Previous != prev || !got.Until.Equal(until) {
		t.Fatalf("after rotation User = %+v, want %+v", got, rotated)
	}
	if keys := got.Keys(until.Add(-time.Second)); len(keys) != 2 || keys[0] != rotated.Key || keys[1] != prev {
		t.Errorf("keys during the overlap = %v", keys)
	}
	if keys := got.Keys(until); len(keys) != 1 || keys[0] != rotated.Key {
		t.Errorf("keys after the overlap = %v", keys)
	}
	if err := us.PutUsers([]store.User{{Key: Key("bob", 3)}, {Key: Key("carol", 4)}}); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := us.ForEachUser(func(u store.User) bool { names = append(names, u.Name()); return true }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if want := []string{"alice." + zone, "bob." + zone, "carol." + zone}; !slices.Equal(names, want) {
		t.Errorf("ForEachUser gave %v, want %v", names, want)
	}
	if found, err := us.DeleteUser(alice.Name()); err != nil || !found {
		t.Fatalf("DeleteUser = %v, %v", found, err)
	}
	if _, ok, _ := us.User(alice.Name()); ok {
		t.Error("a deleted user is still found")
	}
	if found, err := us.DeleteUser(alice.Name()); err != nil || found {
		t.Errorf("deleting again = %v, %v; want false, nil", found, err)
	}
}

func testUsersSurviveReopen(t *testing.T, e Engine) {
	o := newOpener(t, e)
	s := o.store()
	if err := users(t, s).PutUser(store.User{Key: Key("alice", 1)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	u, ok, err := users(t, o.store()).User("alice." + zone)
	if err != nil || !ok || u.Key != Key("alice", 1) {
		t.Fatalf("after reopening User = %+v, %v, %v", u, ok, err)
	}
}

func testUsersChangesAreEvents(t *testing.T, e Engine) {
	s := newOpener(t, e).store()
	sub := s.Subscribe(16)
	defer sub.Close()
	us := users(t, s)
	if err := us.PutUser(store.User{Key: Key("alice", 1)}); err != nil {
		t.Fatal(err)
	}
	if ev := NextEvent(t, sub); !slices.Equal(ev.Users, []string{"alice." + zone}) || len(ev.Changes) != 0 {
		t.Errorf("event of PutUser = %+v", ev)
	}
	if _, err := us.DeleteUser("alice." + zone); err != nil {
		t.Fatal(err)
	}
	if ev := NextEvent(t, sub); !slices.Equal(ev.Users, []string{"alice." + zone}) {
		t.Errorf("event of DeleteUser = %+v", ev)
	}
}

func testDeleteTree(t *testing.T, e Engine) {
	s := newOpener(t, e).store()
	for _, rr := range []string{
		"alice." + zone + " 60 IN TXT \"apex of the user\"",
		"laptop.alice." + zone + " 60 IN AAAA fd00::1",
		"_ssh._tcp.laptop.alice." + zone + " 60 IN SRV 0 0 22 laptop.alice." + zone,
		"bob." + zone + " 60 IN TXT \"other user\"",
		"alicex." + zone + " 60 IN TXT \"a name that only starts alike\"",
	} {
		r := RR(t, rr)
		set(t, s, r.Header().Name, store.Record{RR: r})
	}
	var n int
	ev, err := s.Update(func(tx store.Tx) (err error) {
		n, err = tx.DeleteTree("alice." + zone)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 || len(ev.Changes) != 3 {
		t.Errorf("DeleteTree emptied %d names, event has %d changes; want 3", n, len(ev.Changes))
	}
	for _, name := range []string{"alice.", "laptop.alice.", "_ssh._tcp.laptop.alice.", "_tcp.laptop.alice."} {
		if rrs, exists, _ := s.Lookup(name + zone); len(rrs) != 0 || exists {
			t.Errorf("%s%s after DeleteTree: %v, exists %v", name, zone, rrs, exists)
		}
	}
	for _, name := range []string{"bob.", "alicex."} {
		if rrs, _, _ := s.Lookup(name + zone); len(rrs) != 1 {
			t.Errorf("%s%s was touched by DeleteTree: %v", name, zone, rrs)
		}
	}
	if u, _ := usage(s, "alice."+zone); u.Records != 0 {
		t.Errorf("alice still holds %d records", u.Records)
	}
	// An owner that holds nothing: nothing to do, nothing changes.
	ev, err = s.Update(func(tx store.Tx) (err error) {
		n, err = tx.DeleteTree("carol." + zone)
		return err
	})
	if err != nil || n != 0 || len(ev.Changes) != 0 {
		t.Errorf("DeleteTree of an empty owner: %d, %+v, %v", n, ev, err)
	}
}

func usage(s store.Store, owner string) (u store.Usage, err error) {
	_, err = s.Update(func(tx store.Tx) error {
		u, err = tx.Usage(owner)
		return err
	})
	return u, err
}
