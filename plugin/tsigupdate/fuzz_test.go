package tsigupdate

import (
	"path/filepath"
	"testing"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
)

// FuzzUpdate runs arbitrary UPDATE messages through the whole RFC 2136 path
// against a real store: no panic, and nothing outside the key's subtree
// ever changes.
func FuzzUpdate(f *testing.F) {
	m := new(dns.Msg).SetUpdate(zone)
	m.Insert(rrs(host + " 3600 IN A 192.0.2.1"))
	m.NameNotUsed(rrs(other + " A 192.0.2.1"))
	seedMsg, _ := m.Pack()
	f.Add(seedMsg)
	// Without fsync: the fuzzer runs thousands of updates a second.
	st, err := boltstore.Open(filepath.Join(f.TempDir(), "zone.db"), zone, boltstore.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	sub := st.Subscribe(1 << 16)
	u := newUpdater()
	f.Fuzz(func(t *testing.T, raw []byte) {
		r := new(dns.Msg)
		if r.Unpack(raw) != nil {
			return
		}
		r.Opcode = dns.OpcodeUpdate
		u.update(st, alice, r, Lease{})
		for {
			select {
			case ev, ok := <-sub.C:
				if !ok {
					sub = st.Subscribe(1 << 16)
					return
				}
				for _, c := range ev.Changes {
					if !dns.IsSubDomain(alice, c.Name) {
						t.Fatalf("key %s changed %s", alice, c.Name)
					}
				}
			default:
				return
			}
		}
	})
}
