package btmm

import (
	"fmt"
	"path/filepath"

	"github.com/openbtmm/btmm/plugin/pkg/shared"
	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
)

// The store file is locked by the process that has it open, a Corefile
// reload builds new plugin instances before it shuts the old ones down,
// and a zone may be served by several server blocks (plain DNS and TLS).
// So stores are shared by the file's absolute path (see package shared).
var stores shared.Registry[*boltstore.Store]

// openStore is boltstore.Open; tests replace it to set a clock.
var openStore = func(path, zone string) (*boltstore.Store, error) {
	return boltstore.Open(path, zone, boltstore.Options{})
}

func acquireStore(path, zone string) (store.Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	s, _, err := stores.Acquire(abs, func() (*boltstore.Store, error) {
		return openStore(abs, zone)
	}, func(s *boltstore.Store) error {
		if s.Zone() != store.Canonical(zone) {
			return fmt.Errorf("store %s already serves zone %s", path, s.Zone())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func releaseStore(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	return stores.Release(abs, (*boltstore.Store).Close)
}
