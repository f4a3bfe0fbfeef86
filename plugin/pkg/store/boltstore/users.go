package boltstore

import (
	bolt "go.etcd.io/bbolt"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// The users live in the file alone, not in the zone in memory nor in the
// log: a lookup reads the B+tree through bbolt's memory map (a few hundred
// nanoseconds, no copy of the users on the heap), a change is one bbolt
// transaction, synced before it returns. So a million users cost the
// server no start-up time and no heap, only the pages of the file that
// lookups touch.
var bucketUsers = []byte("users") // user's domain, lowercase -> store.EncodeUser

var _ store.Users = (*Store)(nil)

// User implements store.Users.
func (s *Store) User(name string) (store.User, bool, error) {
	var u store.User
	var found bool
	err := s.db.View(func(btx *bolt.Tx) error {
		v := btx.Bucket(bucketUsers).Get([]byte(name))
		if v == nil {
			return nil
		}
		found = true
		var err error
		u, err = store.DecodeUser(name, v)
		return err
	})
	return u, found, err
}

// PutUser implements store.Users.
func (s *Store) PutUser(u store.User) error {
	v, err := store.EncodeUser(u)
	if err != nil {
		return err
	}
	err = s.db.Update(func(btx *bolt.Tx) error {
		return btx.Bucket(bucketUsers).Put([]byte(u.Name()), v)
	})
	if err != nil {
		return err
	}
	s.publishUser(u.Name())
	return nil
}

// PutUsers implements store.Users, in one bbolt transaction.
func (s *Store) PutUsers(us []store.User) error {
	vals := make([][]byte, len(us))
	for i, u := range us {
		v, err := store.EncodeUser(u)
		if err != nil {
			return err
		}
		vals[i] = v
	}
	err := s.db.Update(func(btx *bolt.Tx) error {
		b := btx.Bucket(bucketUsers)
		for i, u := range us {
			if err := b.Put([]byte(u.Name()), vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || len(us) == 0 {
		return err
	}
	names := make([]string, len(us))
	for i, u := range us {
		names[i] = u.Name()
	}
	s.publishUsers(names)
	return nil
}

// DeleteUser implements store.Users.
func (s *Store) DeleteUser(name string) (bool, error) {
	var found bool
	err := s.db.Update(func(btx *bolt.Tx) error {
		b := btx.Bucket(bucketUsers)
		if found = b.Get([]byte(name)) != nil; !found {
			return nil
		}
		return b.Delete([]byte(name))
	})
	if err != nil || !found {
		return false, err
	}
	s.publishUser(name)
	return true, nil
}

// ForEachUser implements store.Users, in the order of the names' octets.
func (s *Store) ForEachUser(fn func(store.User) bool) error {
	return s.db.View(func(btx *bolt.Tx) error {
		c := btx.Bucket(bucketUsers).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			u, err := store.DecodeUser(string(k), v)
			if err != nil {
				return err
			}
			if !fn(u) {
				return nil
			}
		}
		return nil
	})
}

func (s *Store) publishUser(name string) { s.publishUsers([]string{name}) }

func (s *Store) publishUsers(names []string) {
	s.mu.RLock()
	serial := s.z.Serial()
	s.mu.RUnlock()
	s.feed.Publish(store.Event{Serial: serial, Users: names})
}
