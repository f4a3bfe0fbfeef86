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
// So stores are shared by where they are (see package shared): the file's
// absolute path, or the etcd endpoints and prefix.
var stores shared.Registry[store.Store]

// storeKey says where the zone lives, for the registry and the logs.
func (b *Btmm) storeKey() string {
	if b.etcd != nil {
		return b.etcd.String()
	}
	abs, err := filepath.Abs(b.storePath)
	if err != nil {
		return b.storePath
	}
	return abs
}

// openStore opens the zone where the configuration puts it.
func (b *Btmm) openStore() (store.Store, error) {
	if b.etcd != nil {
		return b.etcd.open(b.zone)
	}
	return boltstore.Open(b.storeKey(), b.zone, boltstore.Options{})
}

func acquireStore(key string, open func() (store.Store, error), zone string) (store.Store, error) {
	s, _, err := stores.Acquire(key, open, func(s store.Store) error {
		if s.Zone() != store.Canonical(zone) {
			return fmt.Errorf("store %s already serves zone %s", key, s.Zone())
		}
		return nil
	})
	return s, err
}

func releaseStore(key string) error {
	return stores.Release(key, store.Store.Close)
}
