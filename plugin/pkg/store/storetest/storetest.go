// Package storetest holds what tests need of stores: Run, the conformance
// tests that every store engine passes (the same tests for each), and
// New, a real store for the tests of the plugins that use one (a
// boltstore in the test's temporary directory, holding the records given
// in presentation format).
package storetest

import (
	"path/filepath"
	"testing"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
)

// New opens a store for zone with opts, closed when the test ends, and
// puts records into it (without leases) in one transaction.
func New(t testing.TB, zone string, opts boltstore.Options, records ...string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "zone.db"), zone, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	Put(t, s, records...)
	return s
}

// Put replaces the records at each name that records name, in one
// transaction.
func Put(t testing.TB, s store.Store, records ...string) {
	t.Helper()
	byName := make(map[string][]store.Record)
	var order []string
	for _, text := range records {
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatal(err)
		}
		n := dns.CanonicalName(rr.Header().Name)
		if _, ok := byName[n]; !ok {
			order = append(order, n)
		}
		byName[n] = append(byName[n], store.Record{RR: rr})
	}
	if _, err := s.Update(func(tx store.Tx) error {
		for _, n := range order {
			if err := tx.Set(n, byName[n]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
