package boltstore_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
	"github.com/openbtmm/btmm/plugin/pkg/store/storetest"
)

// TestConformance runs the tests every store engine must pass.
func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Engine{
		Place: func(t *testing.T) func(string, func() time.Time) (store.Store, error) {
			path := filepath.Join(t.TempDir(), "zone.db")
			return func(zone string, now func() time.Time) (store.Store, error) {
				return boltstore.Open(path, zone, boltstore.Options{Now: now, ManualSweep: true})
			}
		},
		Sweep: func(s store.Store) (int, error) { return s.(*boltstore.Store).Sweep() },
	})
}
