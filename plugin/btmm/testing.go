package btmm

import (
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/store"
)

// NewForTest returns a Btmm for zone that serves from s and knows keys, as
// setup and OnStartup would have made it. It is for the tests of sibling
// plugins (tsig-update), which cannot set its fields; servers use setup.
func NewForTest(zone string, s store.Store, keys ...keyfile.Key) *Btmm {
	b := &Btmm{zone: dns.CanonicalName(zone), store: s, keys: make(map[string]keyfile.Key), now: time.Now}
	for _, k := range keys {
		k.Name = dns.CanonicalName(k.Name)
		b.keys[k.Name] = k
	}
	return b
}
