package etcdstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/etcdstore"
	"github.com/openbtmm/btmm/plugin/pkg/store/etcdstore/etcdtest"
	"github.com/openbtmm/btmm/plugin/pkg/store/storetest"
)

// TestConformance runs the tests every store engine must pass, on a
// three-member cluster, each test under a prefix of its own.
func TestConformance(t *testing.T) {
	cli := etcdtest.Start(t, 3).Client(t)
	n := 0
	storetest.Run(t, storetest.Engine{
		Place: func(t *testing.T) func(string, func() time.Time) (store.Store, error) {
			n++
			prefix := fmt.Sprintf("/btmm/conformance/%d/", n)
			return func(zone string, now func() time.Time) (store.Store, error) {
				return etcdstore.Open(cli, prefix, zone, etcdstore.Options{Now: now, ManualSweep: true, Logf: t.Logf})
			}
		},
		Sweep: func(s store.Store) (int, error) { return s.(*etcdstore.Store).Sweep() },
	})
}
