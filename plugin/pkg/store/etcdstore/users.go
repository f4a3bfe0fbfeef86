package etcdstore

import (
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// Users live under P u/NAME (NAME the user's domain, lowercase), each
// value store.EncodeUser's. Every instance holds them in memory beside
// the zone, kept by the same watch: a lookup is a map read, and a change
// made on one instance reaches the others' feeds as an Event naming the
// user, within the watch's delay (milliseconds on a LAN). A change made
// here is in this instance's copy before PutUser or DeleteUser returns.
const dirUsers = "u/"

var _ store.Users = (*Store)(nil)

// User implements store.Users.
func (s *Store) User(name string) (store.User, bool, error) {
	s.mu.RLock()
	v, ok := s.users[name]
	s.mu.RUnlock()
	if !ok {
		return store.User{}, false, nil
	}
	u, err := store.DecodeUser(name, v)
	return u, err == nil, err
}

// PutUser implements store.Users.
func (s *Store) PutUser(u store.User) error {
	v, err := store.EncodeUser(u)
	if err != nil {
		return err
	}
	ctx, cancel := s.reqCtx()
	defer cancel()
	resp, err := s.cli.Put(ctx, s.key(dirUsers+u.Name()), string(v))
	if err != nil {
		return fmt.Errorf("etcd: user %s: %w", u.Name(), err)
	}
	s.waitApplied(resp.Header.Revision)
	return nil
}

// PutUsers implements store.Users, in transactions of at most 128 puts
// (etcd's default limit of operations per transaction).
func (s *Store) PutUsers(us []store.User) error {
	for len(us) > 0 {
		n := min(len(us), 128)
		ops := make([]clientv3.Op, n)
		for i, u := range us[:n] {
			v, err := store.EncodeUser(u)
			if err != nil {
				return err
			}
			ops[i] = clientv3.OpPut(s.key(dirUsers+u.Name()), string(v))
		}
		ctx, cancel := s.reqCtx()
		resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("etcd: users: %w", err)
		}
		s.waitApplied(resp.Header.Revision)
		us = us[n:]
	}
	return nil
}

// DeleteUser implements store.Users.
func (s *Store) DeleteUser(name string) (bool, error) {
	ctx, cancel := s.reqCtx()
	defer cancel()
	resp, err := s.cli.Delete(ctx, s.key(dirUsers+name))
	if err != nil {
		return false, fmt.Errorf("etcd: user %s: %w", name, err)
	}
	s.waitApplied(resp.Header.Revision)
	return resp.Deleted > 0, nil
}

// ForEachUser implements store.Users, from this instance's copy.
func (s *Store) ForEachUser(fn func(store.User) bool) error {
	s.mu.RLock()
	names := make([]string, 0, len(s.users))
	for name := range s.users {
		names = append(names, name)
	}
	s.mu.RUnlock()
	for _, name := range names {
		u, ok, err := s.User(name)
		if err != nil {
			return err
		}
		if ok && !fn(u) {
			return nil
		}
	}
	return nil
}

// applyUser applies a watched change of the user at P u/NAME; s.mu is
// held. It returns the event to publish.
func (s *Store) applyUser(ev *clientv3.Event, name string) store.Event {
	if ev.Type == clientv3.EventTypeDelete {
		delete(s.users, name)
	} else {
		s.users[name] = ev.Kv.Value
	}
	return store.Event{Serial: s.z.Serial(), Users: []string{name}}
}
