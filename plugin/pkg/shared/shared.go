// Package shared keeps what must outlive a Corefile reload: a reload
// builds the new plugin instances before it shuts the old ones down, and
// the new ones want the same sockets and the same locked store file. So
// such things are shared through a Registry, keyed (by address, by path)
// and counted: the first Acquire opens one, the others take it, and the
// last Release closes it.
package shared

import "sync"

// Registry shares values of type V by key. The zero Registry is ready to
// use.
type Registry[V any] struct {
	mu      sync.Mutex
	entries map[string]*entry[V]
}

type entry[V any] struct {
	v    V
	refs int
}

// Acquire returns the value for key: made by open if there is none, else
// the one there, which reuse (if not nil) may adapt to the new
// configuration or refuse. running says which, for logs.
func (r *Registry[V]) Acquire(key string, open func() (V, error), reuse func(V) error) (v V, running bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries[key]; ok {
		if reuse != nil {
			if err := reuse(e.v); err != nil {
				return v, true, err
			}
		}
		e.refs++
		return e.v, true, nil
	}
	if v, err = open(); err != nil {
		return v, false, err
	}
	if r.entries == nil {
		r.entries = make(map[string]*entry[V])
	}
	r.entries[key] = &entry[V]{v: v, refs: 1}
	return v, false, nil
}

// Release gives back what Acquire(key, ...) returned; the last release
// calls done (the value's Close, say) and forgets the value.
func (r *Registry[V]) Release(key string, done func(V) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[key]
	if !ok {
		return nil
	}
	if e.refs--; e.refs > 0 {
		return nil
	}
	delete(r.entries, key)
	return done(e.v)
}
