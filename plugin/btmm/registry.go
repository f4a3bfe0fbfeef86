package btmm

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
)

// The store file is locked by the process that has it open, and a Corefile
// reload builds new plugin instances before it shuts the old ones down; and
// a zone may be served by several server blocks (plain DNS and TLS). So
// stores are shared through this registry, keyed by the file's absolute
// path and counted: the last release closes the file.
var registry struct {
	sync.Mutex
	stores map[string]*sharedStore
}

type sharedStore struct {
	*boltstore.Store
	refs int
}

// openStore is boltstore.Open; tests replace it to set a clock.
var openStore = func(path, zone string) (*boltstore.Store, error) {
	return boltstore.Open(path, zone, boltstore.Options{})
}

func acquireStore(path, zone string) (store.Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	registry.Lock()
	defer registry.Unlock()
	if s, ok := registry.stores[abs]; ok {
		if s.Zone() != store.Canonical(zone) {
			return nil, fmt.Errorf("store %s already serves zone %s", path, s.Zone())
		}
		s.refs++
		return s.Store, nil
	}
	s, err := openStore(abs, zone)
	if err != nil {
		return nil, err
	}
	if registry.stores == nil {
		registry.stores = make(map[string]*sharedStore)
	}
	registry.stores[abs] = &sharedStore{Store: s, refs: 1}
	return s, nil
}

func releaseStore(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	registry.Lock()
	defer registry.Unlock()
	s, ok := registry.stores[abs]
	if !ok {
		return nil
	}
	if s.refs--; s.refs > 0 {
		return nil
	}
	delete(registry.stores, abs)
	return s.Close()
}
