package tsigupdate

import (
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/btmm"
	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
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
		u.update(st, alice, r, updatelease.Grant{}, nil)
		sub = onlyAlice(t, st, sub)
	})
}

// FuzzRespond feeds arbitrary octets to the update listeners' handler, over
// UDP and TCP: no panic, a reply (if any) that parses and answers the
// request's ID, and no change outside alice's subtree.
func FuzzRespond(f *testing.F) {
	m := new(dns.Msg).SetUpdate(zone)
	m.Insert(rrs(host + " 3600 IN A 192.0.2.1"))
	m.SetTsig(alice, dns.HmacMD5, 300, time.Now().Unix())
	seed, _, _ := dns.TsigGenerateWithProvider(m, tsigauth.HMAC(aliceMD5.Secret), "", false)
	f.Add(seed, true)
	q, _ := new(dns.Msg).SetQuestion(host, dns.TypeSOA).Pack()
	f.Add(q, false)
	st, err := boltstore.Open(filepath.Join(f.TempDir(), "zone.db"), zone, boltstore.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	u := newUpdater()
	z := btmm.NewForTest(zone, st, aliceMD5)
	u.zone, u.Next = z, z
	sub := st.Subscribe(1 << 16)
	f.Fuzz(func(t *testing.T, raw []byte, udp bool) {
		out := u.respond(raw, udp, nil)
		if out != nil {
			r := new(dns.Msg)
			if err := r.Unpack(out); err != nil || !r.Response || r.Id != binary.BigEndian.Uint16(raw) {
				t.Fatalf("reply %x: %v %v", out, r, err)
			}
		}
		sub = onlyAlice(t, st, sub)
	})
}

// onlyAlice drains what sub has received and fails t if any change is
// outside alice's subtree. It returns the subscription to use next: a new
// one if sub ended (it overflowed).
func onlyAlice(t *testing.T, st store.Store, sub *store.Subscription) *store.Subscription {
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				return st.Subscribe(1 << 16)
			}
			for _, c := range ev.Changes {
				if !dns.IsSubDomain(alice, c.Name) {
					t.Fatalf("key %s changed %s", alice, c.Name)
				}
			}
		default:
			return sub
		}
	}
}
