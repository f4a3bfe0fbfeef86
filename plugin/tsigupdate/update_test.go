package tsigupdate

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/btmm"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/store/boltstore"
	"github.com/openbtmm/btmm/plugin/pkg/store/storetest"
	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
)

const (
	zone  = "members.example.com."
	alice = "alice.members.example.com." // the key every test signs with
	host  = "host.alice.members.example.com."
	other = "new.alice.members.example.com."
)

// start is when every test's clock starts.
var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable clock, safe for the store's sweeper goroutine.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// newStore opens a store for zone in a temporary directory, holding the
// given records (without leases), with its clock at start.
func newStore(t testing.TB, records ...string) (*boltstore.Store, *clock) {
	t.Helper()
	clk := &clock{t: start}
	st := storetest.New(t, zone, boltstore.Options{Now: clk.Now}, records...)
	return st, clk
}

// newUpdater returns the plugin for zone, whose users are alice and bob,
// with a memory of replays that starts now.
func newUpdater() *TsigUpdate {
	users := btmm.NewForTest(zone, nil, keyfile.Key{Name: alice}, keyfile.Key{Name: "bob.members.example.com."})
	return &TsigUpdate{zone: users, maxRecords: defaultMaxRecords, maxBytes: defaultMaxBytes, now: time.Now}
}

func mustRR(s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return rr
}

func rrs(ss ...string) []dns.RR {
	out := make([]dns.RR, len(ss))
	for i, s := range ss {
		out[i] = mustRR(s)
	}
	return out
}

// hdr makes an RR without RDATA, for the forms that miekg/dns has no helper
// for (a TTL where there must be none, a class or type of one's choice).
func hdr(name string, class, rrtype uint16, ttl uint32) dns.RR {
	return &dns.ANY{Hdr: dns.RR_Header{Name: name, Class: class, Rrtype: rrtype, Ttl: ttl}}
}

// upd returns an UPDATE for zone filled in by build, as the server sees it.
func upd(t *testing.T, build func(m *dns.Msg)) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetUpdate(zone)
	if build != nil {
		build(m)
	}
	return wire(t, m)
}

// wire packs and unpacks m: update reads header fields, such as Rdlength,
// that only the wire sets.
func wire(t *testing.T, m *dns.Msg) *dns.Msg {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("packing %v: %v", m, err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		t.Fatalf("unpacking: %v", err)
	}
	return r
}

// lookup returns the records served at name, in presentation form, sorted.
func lookup(t *testing.T, st store.Store, name string) []string {
	t.Helper()
	got, _, err := st.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(got))
	for _, rr := range got {
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

// canon puts records written by hand into lookup's form.
func canon(ss []string) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, mustRR(s).String())
	}
	slices.Sort(out)
	return out
}

func serial(t *testing.T, st store.Store) uint32 {
	t.Helper()
	s, err := st.Serial()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func usage(t *testing.T, st store.Store, owner string) store.Usage {
	t.Helper()
	var u store.Usage
	if _, err := st.Update(func(tx store.Tx) (err error) {
		u, err = tx.Usage(owner)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return u
}

// stored returns the records at name as the store keeps them, leases too.
func stored(t *testing.T, st store.Store, name string) []store.Record {
	t.Helper()
	var recs []store.Record
	if _, err := st.Update(func(tx store.Tx) (err error) {
		recs, err = tx.Get(name)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

// updateTest is one UPDATE applied to a fresh store holding seed.
type updateTest struct {
	name  string
	key   string // alice if empty
	seed  []string
	build func(m *dns.Msg)
	rcode int
	// want lists the names the UPDATE changes and their records after it.
	// Every other name, and every name if rcode is not NOERROR, must be
	// as before, and the serial must move only if something changed.
	want map[string][]string
}

func runUpdateTests(t *testing.T, tests []updateTest) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := newStore(t, tc.seed...)
			m := upd(t, tc.build)
			key := tc.key
			if key == "" {
				key = alice
			}

			// Watch every in-zone name the test mentions.
			var names []string
			watch := func(n string) {
				n = dns.CanonicalName(n)
				if dns.IsSubDomain(zone, n) && !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
			for _, s := range tc.seed {
				watch(mustRR(s).Header().Name)
			}
			for _, rr := range append(append([]dns.RR(nil), m.Answer...), m.Ns...) {
				watch(rr.Header().Name)
			}
			for n := range tc.want {
				watch(n)
			}
			before := make(map[string][]string)
			for _, n := range names {
				before[n] = lookup(t, st, n)
			}
			serialBefore := serial(t, st)

			rcode, err := newUpdater().update(st, key, m, updatelease.Grant{}, nil)
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			if rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[rcode], dns.RcodeToString[tc.rcode])
			}

			wantAt := make(map[string][]string)
			for n, w := range tc.want {
				wantAt[dns.CanonicalName(n)] = w
			}
			changed := false
			for _, n := range names {
				want := before[n]
				if w, ok := wantAt[n]; ok && rcode == dns.RcodeSuccess {
					want = canon(w)
				}
				got := lookup(t, st, n)
				if !slices.Equal(got, want) {
					t.Errorf("records at %s:\n got %q\nwant %q", n, got, want)
				}
				changed = changed || !slices.Equal(want, before[n])
			}
			switch s := serial(t, st); {
			case changed && s != serialBefore+1:
				t.Errorf("serial %d after a change, want %d", s, serialBefore+1)
			case !changed && s != serialBefore:
				t.Errorf("serial %d, want it unchanged at %d", s, serialBefore)
			}
		})
	}
}

func TestZoneSection(t *testing.T) {
	added := map[string][]string{other: {other + " 3600 IN A 192.0.2.9"}}
	insert := func(m *dns.Msg) { m.Insert(rrs(other + " 3600 IN A 192.0.2.9")) }
	runUpdateTests(t, []updateTest{
		{name: "the zone", build: insert, want: added},
		{name: "the zone in other case", build: func(m *dns.Msg) {
			m.Question[0].Name = "Members.EXAMPLE.com."
			insert(m)
		}, want: added},
		{name: "another zone", build: func(m *dns.Msg) {
			m.Question[0].Name = "example.org."
			insert(m)
		}, rcode: dns.RcodeNotAuth},
		{name: "the key's own user zone", build: func(m *dns.Msg) {
			m.Question[0].Name = alice
			insert(m)
		}, want: added},
		{name: "the key's own user zone in other case", build: func(m *dns.Msg) {
			m.Question[0].Name = "ALICE.members.example.com."
			insert(m)
		}, want: added},
		{name: "another user's zone", build: func(m *dns.Msg) {
			m.Question[0].Name = "bob.members.example.com."
			m.Insert(rrs("x.bob.members.example.com. 3600 IN A 192.0.2.9"))
		}, rcode: dns.RcodeNotAuth},
		{name: "a name below the key's user zone, no zone", build: func(m *dns.Msg) {
			m.Question[0].Name = host
			insert(m)
		}, rcode: dns.RcodeNotAuth},
		{name: "a name below the zone that is no user's", build: func(m *dns.Msg) {
			m.Question[0].Name = "carol.members.example.com."
			m.Insert(rrs("x.carol.members.example.com. 3600 IN A 192.0.2.9"))
		}, rcode: dns.RcodeNotAuth},
		{name: "the user zone, a name outside it", build: func(m *dns.Msg) {
			m.Question[0].Name = alice
			m.Insert(rrs("x.members.example.com. 3600 IN A 192.0.2.9"))
		}, rcode: dns.RcodeNotZone},
		{name: "another class", build: func(m *dns.Msg) {
			m.Question[0].Qclass = dns.ClassCHAOS
		}, rcode: dns.RcodeNotAuth},
		{name: "two zones", build: func(m *dns.Msg) {
			m.Question = append(m.Question, m.Question[0])
			insert(m)
		}, rcode: dns.RcodeFormatError},
		{name: "no zone", build: func(m *dns.Msg) {
			m.Question = nil
		}, rcode: dns.RcodeFormatError},
		{name: "ZTYPE A", build: func(m *dns.Msg) {
			m.Question[0].Qtype = dns.TypeA
			insert(m)
		}, rcode: dns.RcodeFormatError},
	})
}

func TestPrerequisites(t *testing.T) {
	seed := []string{
		host + " 3600 IN A 192.0.2.1",
		host + " 3600 IN A 192.0.2.2",
		host + " 3600 IN TXT \"hello\"",
		// _tcp.alice.members.example.com. is an empty non-terminal.
		"_ssh._tcp.alice.members.example.com. 3600 IN SRV 0 0 22 host.alice.members.example.com.",
	}
	const missing = "missing.alice.members.example.com."
	const ent = "_tcp.alice.members.example.com."
	// Each test's update adds one record, which shows that it ran.
	added := map[string][]string{other: {other + " 3600 IN A 192.0.2.9"}}
	with := func(prereq func(m *dns.Msg)) func(m *dns.Msg) {
		return func(m *dns.Msg) {
			prereq(m)
			m.Insert(rrs(other + " 3600 IN A 192.0.2.9"))
		}
	}
	tests := []updateTest{
		// Name is in use (ANY ANY): NXDOMAIN, and an empty non-terminal is not in use.
		{name: "name in use: holds",
			build: with(func(m *dns.Msg) { m.NameUsed(rrs(host + " A 192.0.2.1")) }), want: added},
		{name: "name in use: missing name",
			build: with(func(m *dns.Msg) { m.NameUsed(rrs(missing + " A 192.0.2.1")) }), rcode: dns.RcodeNameError},
		{name: "name in use: empty non-terminal",
			build: with(func(m *dns.Msg) { m.NameUsed(rrs(ent + " A 192.0.2.1")) }), rcode: dns.RcodeNameError},

		// RRset exists, value independent (ANY T): NXRRSET.
		{name: "RRset exists: holds",
			build: with(func(m *dns.Msg) { m.RRsetUsed(rrs(host + " A 192.0.2.99")) }), want: added},
		{name: "RRset exists: other type at the name",
			build: with(func(m *dns.Msg) { m.RRsetUsed(rrs(host + " AAAA ::1")) }), rcode: dns.RcodeNXRrset},
		{name: "RRset exists: missing name",
			build: with(func(m *dns.Msg) { m.RRsetUsed(rrs(missing + " A 192.0.2.1")) }), rcode: dns.RcodeNXRrset},

		// Name is not in use (NONE ANY): YXDOMAIN.
		{name: "name not in use: holds",
			build: with(func(m *dns.Msg) { m.NameNotUsed(rrs(missing + " A 192.0.2.1")) }), want: added},
		{name: "name not in use: empty non-terminal holds",
			build: with(func(m *dns.Msg) { m.NameNotUsed(rrs(ent + " A 192.0.2.1")) }), want: added},
		{name: "name not in use: name in use",
			build: with(func(m *dns.Msg) { m.NameNotUsed(rrs(host + " A 192.0.2.1")) }), rcode: dns.RcodeYXDomain},

		// RRset does not exist (NONE T): YXRRSET.
		{name: "RRset does not exist: holds",
			build: with(func(m *dns.Msg) { m.RRsetNotUsed(rrs(host + " AAAA ::1")) }), want: added},
		{name: "RRset does not exist: it does",
			build: with(func(m *dns.Msg) { m.RRsetNotUsed(rrs(host + " A 192.0.2.1")) }), rcode: dns.RcodeYXRrset},

		// RRset exists, value dependent (zone class, with RDATA): NXRRSET.
		{name: "RRset equals: holds, order and TTL aside",
			build: with(func(m *dns.Msg) {
				m.Used(rrs(host+" 60 IN A 192.0.2.2", "HOST.alice.members.example.com. 60 IN A 192.0.2.1"))
			}), want: added},
		{name: "RRset equals: two RRsets at two names",
			build: with(func(m *dns.Msg) {
				m.Used(rrs(host+" A 192.0.2.1", "_ssh._tcp.alice.members.example.com. SRV 0 0 22 host.alice.members.example.com.", host+" A 192.0.2.2"))
			}), want: added},
		{name: "RRset equals: a subset",
			build: with(func(m *dns.Msg) { m.Used(rrs(host + " A 192.0.2.1")) }), rcode: dns.RcodeNXRrset},
		{name: "RRset equals: a superset",
			build: with(func(m *dns.Msg) {
				m.Used(rrs(host+" A 192.0.2.1", host+" A 192.0.2.2", host+" A 192.0.2.3"))
			}), rcode: dns.RcodeNXRrset},
		{name: "RRset equals: other data",
			build: with(func(m *dns.Msg) { m.Used(rrs(host+" A 192.0.2.1", host+" A 192.0.2.3")) }), rcode: dns.RcodeNXRrset},
		{name: "RRset equals: no such RRset",
			build: with(func(m *dns.Msg) { m.Used(rrs(missing + " A 192.0.2.1")) }), rcode: dns.RcodeNXRrset},

		// All must hold; the first that fails answers.
		{name: "two prerequisites, the second fails",
			build: with(func(m *dns.Msg) {
				m.NameUsed(rrs(host + " A 192.0.2.1"))
				m.RRsetNotUsed(rrs(host + " TXT x"))
			}), rcode: dns.RcodeYXRrset},

		// Form.
		{name: "TTL not zero",
			build: with(func(m *dns.Msg) { m.Answer = append(m.Answer, hdr(host, dns.ClassANY, dns.TypeANY, 300)) }),
			rcode: dns.RcodeFormatError},
		{name: "class ANY with RDATA",
			build: with(func(m *dns.Msg) {
				rr := mustRR(host + " 0 IN A 192.0.2.1")
				rr.Header().Class = dns.ClassANY
				m.Answer = append(m.Answer, rr)
			}), rcode: dns.RcodeFormatError},
		{name: "class NONE with RDATA",
			build: with(func(m *dns.Msg) {
				rr := mustRR(host + " 0 IN A 192.0.2.1")
				rr.Header().Class = dns.ClassNONE
				m.Answer = append(m.Answer, rr)
			}), rcode: dns.RcodeFormatError},
		{name: "another class",
			build: with(func(m *dns.Msg) { m.Answer = append(m.Answer, hdr(host, dns.ClassCHAOS, dns.TypeA, 0)) }),
			rcode: dns.RcodeFormatError},
		{name: "zone class with a meta type",
			build: with(func(m *dns.Msg) { m.Answer = append(m.Answer, hdr(host, dns.ClassINET, dns.TypeANY, 0)) }),
			rcode: dns.RcodeFormatError},
		{name: "name outside the zone",
			build: with(func(m *dns.Msg) { m.NameUsed(rrs("www.example.org. A 192.0.2.1")) }), rcode: dns.RcodeNotZone},
	}
	for i := range tests {
		tests[i].seed = seed
	}
	runUpdateTests(t, tests)
}

func TestUpdates(t *testing.T) {
	const www = "www.alice.members.example.com."
	seed := []string{
		host + " 3600 IN A 192.0.2.1",
		host + " 3600 IN A 192.0.2.2",
		host + " 3600 IN TXT \"hello\"",
		www + " 3600 IN CNAME host.alice.members.example.com.",
	}
	tests := []updateTest{
		{name: "add",
			build: func(m *dns.Msg) { m.Insert(rrs(other + " 120 IN AAAA 2001:db8::9")) },
			want:  map[string][]string{other: {other + " 120 IN AAAA 2001:db8::9"}}},
		{name: "add to an RRset",
			build: func(m *dns.Msg) { m.Insert(rrs(host + " 3600 IN A 192.0.2.3")) },
			want: map[string][]string{host: {
				host + " 3600 IN A 192.0.2.1", host + " 3600 IN A 192.0.2.2", host + " 3600 IN A 192.0.2.3", host + " 3600 IN TXT \"hello\"",
			}}},
		{name: "add a duplicate replaces it with its new TTL",
			build: func(m *dns.Msg) { m.Insert(rrs(host + " 60 IN A 192.0.2.1")) },
			want: map[string][]string{host: {
				host + " 60 IN A 192.0.2.1", host + " 3600 IN A 192.0.2.2", host + " 3600 IN TXT \"hello\"",
			}}},
		{name: "add the same record twice in one update",
			build: func(m *dns.Msg) { m.Insert(rrs(other+" 60 IN A 192.0.2.9", other+" 90 IN A 192.0.2.9")) },
			want:  map[string][]string{other: {other + " 90 IN A 192.0.2.9"}}},
		{name: "add a duplicate with the same TTL changes nothing",
			build: func(m *dns.Msg) { m.Insert(rrs(host + " 3600 IN A 192.0.2.1")) }},
		{name: "delete an RRset",
			build: func(m *dns.Msg) { m.RemoveRRset(rrs(host + " A 192.0.2.1")) },
			want:  map[string][]string{host: {host + " 3600 IN TXT \"hello\""}}},
		{name: "delete all RRsets at a name",
			build: func(m *dns.Msg) { m.RemoveName(rrs(host + " A 192.0.2.1")) },
			want:  map[string][]string{host: nil}},
		{name: "delete one RR",
			build: func(m *dns.Msg) { m.Remove(rrs(host + " 3600 IN A 192.0.2.1")) },
			want:  map[string][]string{host: {host + " 3600 IN A 192.0.2.2", host + " 3600 IN TXT \"hello\""}}},
		{name: "delete one RR, name case and TTL aside",
			build: func(m *dns.Msg) { m.Remove(rrs("HOST.Alice.members.example.com. 60 IN TXT \"hello\"")) },
			want:  map[string][]string{host: {host + " 3600 IN A 192.0.2.1", host + " 3600 IN A 192.0.2.2"}}},
		{name: "delete the last RR of a name",
			build: func(m *dns.Msg) { m.Remove(rrs(www + " 3600 IN CNAME host.alice.members.example.com.")) },
			want:  map[string][]string{www: nil}},
		{name: "delete then add in one update",
			build: func(m *dns.Msg) {
				m.RemoveRRset(rrs(host + " A 192.0.2.1"))
				m.Insert(rrs(host + " 3600 IN A 192.0.2.7"))
			},
			want: map[string][]string{host: {host + " 3600 IN A 192.0.2.7", host + " 3600 IN TXT \"hello\""}}},
		{name: "add then delete in one update",
			build: func(m *dns.Msg) {
				m.Insert(rrs(other + " 3600 IN A 192.0.2.7"))
				m.RemoveName(rrs(other + " A 192.0.2.1"))
			}},

		// Deleting what is not there is no error, and no change.
		{name: "delete a missing RRset",
			build: func(m *dns.Msg) { m.RemoveRRset(rrs(host + " AAAA ::1")) }},
		{name: "delete a missing name",
			build: func(m *dns.Msg) { m.RemoveName(rrs(other + " A 192.0.2.1")) }},
		{name: "delete a missing RR",
			build: func(m *dns.Msg) { m.Remove(rrs(host + " 3600 IN A 192.0.2.99")) }},

		// A CNAME and other data never share a name; the add is ignored.
		{name: "add data beside a CNAME",
			build: func(m *dns.Msg) { m.Insert(rrs(www + " 3600 IN A 192.0.2.1")) }},
		{name: "add a CNAME beside data",
			build: func(m *dns.Msg) { m.Insert(rrs(host + " 3600 IN CNAME www.example.net.")) }},
		{name: "replace data with a CNAME in one update",
			build: func(m *dns.Msg) {
				m.RemoveName(rrs(host + " A 192.0.2.1"))
				m.Insert(rrs(host + " 3600 IN CNAME www.example.net."))
			},
			want: map[string][]string{host: {host + " 3600 IN CNAME www.example.net."}}},
		{name: "add a CNAME over a CNAME",
			build: func(m *dns.Msg) { m.Insert(rrs(www + " 3600 IN CNAME www.example.net.")) },
			want:  map[string][]string{www: {www + " 3600 IN CNAME www.example.net."}}},

		// Form.
		{name: "add of type ANY",
			build: func(m *dns.Msg) { m.Ns = append(m.Ns, hdr(other, dns.ClassINET, dns.TypeANY, 3600)) },
			rcode: dns.RcodeFormatError},
		{name: "add of type AXFR",
			build: func(m *dns.Msg) { m.Ns = append(m.Ns, hdr(other, dns.ClassINET, dns.TypeAXFR, 3600)) },
			rcode: dns.RcodeFormatError},
		{name: "add of type OPT",
			build: func(m *dns.Msg) { m.Ns = append(m.Ns, hdr(other, dns.ClassINET, dns.TypeOPT, 3600)) },
			rcode: dns.RcodeFormatError},
		{name: "delete RRset with a TTL",
			build: func(m *dns.Msg) { m.Ns = append(m.Ns, hdr(host, dns.ClassANY, dns.TypeA, 300)) },
			rcode: dns.RcodeFormatError},
		{name: "delete RRset with RDATA",
			build: func(m *dns.Msg) {
				rr := mustRR(host + " 0 IN A 192.0.2.1")
				rr.Header().Class = dns.ClassANY
				m.Ns = append(m.Ns, rr)
			}, rcode: dns.RcodeFormatError},
		{name: "delete RRset of type AXFR",
			build: func(m *dns.Msg) { m.Ns = append(m.Ns, hdr(host, dns.ClassANY, dns.TypeAXFR, 0)) },
			rcode: dns.RcodeFormatError},
		{name: "delete RR with a TTL",
			build: func(m *dns.Msg) {
				rr := mustRR(host + " 300 IN A 192.0.2.1")
				rr.Header().Class = dns.ClassNONE
				m.Ns = append(m.Ns, rr)
			}, rcode: dns.RcodeFormatError},
		{name: "delete RR of type ANY",
			build: func(m *dns.Msg) { m.Ns = append(m.Ns, hdr(host, dns.ClassNONE, dns.TypeANY, 0)) },
			rcode: dns.RcodeFormatError},
		{name: "another class",
			build: func(m *dns.Msg) { m.Ns = append(m.Ns, hdr(host, dns.ClassCHAOS, dns.TypeA, 0)) },
			rcode: dns.RcodeFormatError},
		{name: "name outside the zone",
			build: func(m *dns.Msg) { m.Insert(rrs("www.example.org. 3600 IN A 192.0.2.1")) },
			rcode: dns.RcodeNotZone},
		{name: "a bad RR after good ones",
			build: func(m *dns.Msg) {
				m.Insert(rrs(other + " 3600 IN A 192.0.2.9"))
				m.RemoveName(rrs(host + " A 192.0.2.1"))
				m.Ns = append(m.Ns, hdr(host, dns.ClassANY, dns.TypeA, 300))
			}, rcode: dns.RcodeFormatError},
	}
	for i := range tests {
		tests[i].seed = seed
	}
	runUpdateTests(t, tests)
}

func TestScope(t *testing.T) {
	const bob = "bob.members.example.com."
	seed := []string{bob + " 3600 IN A 192.0.2.66"}
	insert := func(name string) func(m *dns.Msg) {
		return func(m *dns.Msg) { m.Insert(rrs(name + " 3600 IN A 192.0.2.1")) }
	}
	added := func(name string) map[string][]string {
		return map[string][]string{name: {name + " 3600 IN A 192.0.2.1"}}
	}
	runUpdateTests(t, []updateTest{
		{name: "the key's own name", seed: seed, build: insert(alice), want: added(alice)},
		{name: "below the key's name", seed: seed, build: insert(host), want: added(host)},
		{name: "deep below the key's name", seed: seed, build: insert("a.b.c.alice.members.example.com."),
			want: added("a.b.c.alice.members.example.com.")},
		{name: "the key's name in other case", seed: seed, build: insert("Host.ALICE.members.example.com."),
			want: added("Host.ALICE.members.example.com.")},
		{name: "another user", seed: seed, build: insert(bob), rcode: dns.RcodeRefused},
		{name: "below another user", seed: seed, build: insert("host." + bob), rcode: dns.RcodeRefused},
		{name: "the apex", seed: seed, build: insert(zone), rcode: dns.RcodeRefused},
		{name: "a name that only starts like the key's", seed: seed, build: insert("alicia.members.example.com."),
			rcode: dns.RcodeRefused},
		{name: "deleting another user's name", seed: seed,
			build: func(m *dns.Msg) { m.RemoveName(rrs(bob + " A 192.0.2.1")) }, rcode: dns.RcodeRefused},
		{name: "the last RR out of scope: nothing applied", seed: seed,
			build: func(m *dns.Msg) {
				m.Insert(rrs(host+" 3600 IN A 192.0.2.1", other+" 3600 IN A 192.0.2.2"))
				m.RemoveName(rrs(bob + " A 192.0.2.1"))
			}, rcode: dns.RcodeRefused},
		// A prerequisite may not probe another user's names, whether it
		// would hold (bob exists) or fail (nobody is there).
		{name: "prerequisite on another user's name that holds", seed: seed,
			build: func(m *dns.Msg) {
				m.NameUsed(rrs(bob + " A 192.0.2.1"))
				insert(host)(m)
			}, rcode: dns.RcodeRefused},
		{name: "prerequisite on another user's name that fails", seed: seed,
			build: func(m *dns.Msg) {
				m.NameUsed(rrs("carol.members.example.com. A 192.0.2.1"))
				insert(host)(m)
			}, rcode: dns.RcodeRefused},
		{name: "prerequisite on the apex", seed: seed,
			build: func(m *dns.Msg) {
				m.RRsetNotUsed(rrs(zone + " A 192.0.2.1"))
				insert(host)(m)
			}, rcode: dns.RcodeRefused},
		{name: "a deeper key may not touch its parent", key: host, seed: seed,
			build: insert(alice), rcode: dns.RcodeRefused},
		// Zone cuts and DNSSEC data belong to the operator, even in the
		// user's own subtree; deleting them (there are none) is harmless.
		{name: "an NS in the key's subtree", seed: seed,
			build: func(m *dns.Msg) { m.Insert(rrs(host + " 3600 IN NS ns.example.net.")) }, rcode: dns.RcodeRefused},
		{name: "an SOA in the key's subtree", seed: seed,
			build: func(m *dns.Msg) {
				m.Insert(rrs(host + " 3600 IN SOA ns.example.net. h.example.net. 1 2 3 4 5"))
			}, rcode: dns.RcodeRefused},
		{name: "a DS in the key's subtree", seed: seed,
			build: func(m *dns.Msg) {
				m.Insert(rrs(host + " 3600 IN DS 60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118"))
			}, rcode: dns.RcodeRefused},
		{name: "deleting NS RRsets in the key's subtree", seed: seed,
			build: func(m *dns.Msg) { m.RemoveRRset(rrs(host + " 3600 IN NS ns.example.net.")) }},
	})
}

func TestQuota(t *testing.T) {
	a := func(i int) string { return fmt.Sprintf("%s 3600 IN A 192.0.2.%d", host, i) }
	t.Run("records in one update", func(t *testing.T) {
		st, _ := newStore(t)
		u := newUpdater()
		u.maxRecords = 3
		m := upd(t, func(m *dns.Msg) { m.Insert(rrs(a(1), a(2), a(3), a(4))) })
		if rcode, err := u.update(st, alice, m, updatelease.Grant{}, nil); rcode != dns.RcodeRefused || err != nil {
			t.Fatalf("4 records with a quota of 3: %s, %v; want REFUSED", dns.RcodeToString[rcode], err)
		}
		if got := lookup(t, st, host); len(got) != 0 {
			t.Errorf("refused update stored %q", got)
		}
	})
	t.Run("records in two updates", func(t *testing.T) {
		st, _ := newStore(t)
		u := newUpdater()
		u.maxRecords = 3
		// Another user's records count for them, not for alice.
		bob := "bob.members.example.com."
		seedBob := upd(t, func(m *dns.Msg) { m.Insert(rrs(bob+" 3600 IN A 192.0.2.1", bob+" 3600 IN A 192.0.2.2")) })
		if rcode, _ := u.update(st, bob, seedBob, updatelease.Grant{}, nil); rcode != dns.RcodeSuccess {
			t.Fatalf("bob's update: %s", dns.RcodeToString[rcode])
		}
		if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.Insert(rrs(a(1), a(2), a(3))) }), updatelease.Grant{}, nil); rcode != dns.RcodeSuccess {
			t.Fatalf("3 records with a quota of 3: %s", dns.RcodeToString[rcode])
		}
		if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.Insert(rrs(other + " 3600 IN A 192.0.2.9")) }), updatelease.Grant{}, nil); rcode != dns.RcodeRefused {
			t.Fatalf("a 4th record with a quota of 3: %s, want REFUSED", dns.RcodeToString[rcode])
		}
		if got := lookup(t, st, other); len(got) != 0 {
			t.Errorf("refused update stored %q", got)
		}
		if got := usage(t, st, alice); got.Records != 3 {
			t.Errorf("alice holds %d records, want 3", got.Records)
		}
		// A refresh of what is there does not grow: it stays allowed.
		if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.Insert(rrs(a(1), a(2), a(3))) }), updatelease.Grant{}, nil); rcode != dns.RcodeSuccess {
			t.Errorf("refreshing 3 records at the quota: %s", dns.RcodeToString[rcode])
		}
		// Swapping a record for one of the same size is no growth either.
		swap := upd(t, func(m *dns.Msg) {
			m.Remove(rrs(a(3)))
			m.Insert(rrs(a(4)))
		})
		if rcode, _ := u.update(st, alice, swap, updatelease.Grant{}, nil); rcode != dns.RcodeSuccess {
			t.Errorf("swapping a record at the quota: %s", dns.RcodeToString[rcode])
		}
	})
	t.Run("bytes", func(t *testing.T) {
		st, _ := newStore(t)
		u := newUpdater()
		u.maxBytes = 2 * dns.Len(mustRR(a(1)))
		if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.Insert(rrs(a(1), a(2), a(3))) }), updatelease.Grant{}, nil); rcode != dns.RcodeRefused {
			t.Fatalf("3 records with room for 2: %s, want REFUSED", dns.RcodeToString[rcode])
		}
		if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.Insert(rrs(a(1), a(2))) }), updatelease.Grant{}, nil); rcode != dns.RcodeSuccess {
			t.Fatalf("2 records with room for 2: %s", dns.RcodeToString[rcode])
		}
		if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.Insert(rrs(host + " 3600 IN TXT \"x\"")) }), updatelease.Grant{}, nil); rcode != dns.RcodeRefused {
			t.Fatalf("a TXT beyond the byte quota: %s, want REFUSED", dns.RcodeToString[rcode])
		}
		if got := lookup(t, st, host); !slices.Equal(got, canon([]string{a(1), a(2)})) {
			t.Errorf("records at %s: %q", host, got)
		}
	})
	t.Run("deleting while over quota", func(t *testing.T) {
		// Records stored before the quota was lowered.
		st, _ := newStore(t, a(1), a(2), a(3), a(4), a(5))
		u := newUpdater()
		u.maxRecords = 3
		if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.Insert(rrs(other + " 3600 IN A 192.0.2.9")) }), updatelease.Grant{}, nil); rcode != dns.RcodeRefused {
			t.Fatalf("adding while over quota: %s, want REFUSED", dns.RcodeToString[rcode])
		}
		if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.Remove(rrs(a(5))) }), updatelease.Grant{}, nil); rcode != dns.RcodeSuccess {
			t.Fatalf("deleting while over quota: %s", dns.RcodeToString[rcode])
		}
		if got := usage(t, st, alice); got.Records != 4 {
			t.Errorf("after deleting one of 5 records alice holds %d, want 4", got.Records)
		}
		if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.RemoveRRset(rrs(a(1))) }), updatelease.Grant{}, nil); rcode != dns.RcodeSuccess {
			t.Fatalf("deleting an RRset while over quota: %s", dns.RcodeToString[rcode])
		}
		if got := usage(t, st, alice); got.Records != 0 {
			t.Errorf("alice holds %d records, want 0", got.Records)
		}
	})
}

func TestLeases(t *testing.T) {
	const key = "alice.members.example.com. 3600 IN KEY 0 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4="
	addr := host + " 3600 IN A 192.0.2.1"
	lease := updatelease.Grant{Records: 30 * time.Minute, Keys: 7 * 24 * time.Hour}

	t.Run("records and keys", func(t *testing.T) {
		st, _ := newStore(t)
		m := upd(t, func(m *dns.Msg) { m.Insert(rrs(addr, key)) })
		if rcode, err := newUpdater().update(st, alice, m, lease, nil); rcode != dns.RcodeSuccess || err != nil {
			t.Fatalf("update: %s, %v", dns.RcodeToString[rcode], err)
		}
		for _, tc := range []struct {
			name string
			want time.Time
		}{
			{host, start.Add(30 * time.Minute)},
			{alice, start.Add(7 * 24 * time.Hour)},
		} {
			recs := stored(t, st, tc.name)
			if len(recs) != 1 {
				t.Fatalf("%d records at %s, want 1", len(recs), tc.name)
			}
			if !recs[0].Expires.Equal(tc.want) {
				t.Errorf("%s expires at %v, want %v", recs[0].RR, recs[0].Expires, tc.want)
			}
		}
	})

	t.Run("no lease", func(t *testing.T) {
		st, _ := newStore(t)
		if rcode, _ := newUpdater().update(st, alice, upd(t, func(m *dns.Msg) { m.Insert(rrs(addr, key)) }), updatelease.Grant{}, nil); rcode != dns.RcodeSuccess {
			t.Fatalf("update: %s", dns.RcodeToString[rcode])
		}
		for _, name := range []string{host, alice} {
			for _, r := range stored(t, st, name) {
				if !r.Expires.IsZero() {
					t.Errorf("%s expires at %v, want never", r.RR, r.Expires)
				}
			}
		}
	})

	t.Run("renewal", func(t *testing.T) {
		st, clk := newStore(t)
		u := newUpdater()
		if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.Insert(rrs(addr)) }), lease, nil); rcode != dns.RcodeSuccess {
			t.Fatalf("update: %s", dns.RcodeToString[rcode])
		}
		before := serial(t, st)
		sub := st.Subscribe(8)
		defer sub.Close()

		clk.Advance(20 * time.Minute)
		if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.Insert(rrs(addr)) }), lease, nil); rcode != dns.RcodeSuccess {
			t.Fatalf("refresh: %s", dns.RcodeToString[rcode])
		}
		recs := stored(t, st, host)
		if want := start.Add(50 * time.Minute); len(recs) != 1 || !recs[0].Expires.Equal(want) {
			t.Fatalf("after the refresh %v, want one record expiring at %v", recs, want)
		}
		if s := serial(t, st); s != before {
			t.Errorf("a refresh moved the serial from %d to %d", before, s)
		}
		if n := len(sub.C); n != 0 {
			t.Errorf("a refresh published %d events, want none", n)
		}
		// Past the first lease, within the renewed one.
		clk.Advance(20 * time.Minute)
		if got := lookup(t, st, host); !slices.Equal(got, canon([]string{addr})) {
			t.Errorf("40 minutes in, %s serves %q, want the renewed record", host, got)
		}
		clk.Advance(11 * time.Minute)
		if got := lookup(t, st, host); len(got) != 0 {
			t.Errorf("after the renewed lease, %s serves %q", host, got)
		}
	})

	t.Run("an expired record is no longer a prerequisite", func(t *testing.T) {
		st, clk := newStore(t)
		u := newUpdater()
		if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.Insert(rrs(addr)) }), lease, nil); rcode != dns.RcodeSuccess {
			t.Fatalf("update: %s", dns.RcodeToString[rcode])
		}
		clk.Advance(31 * time.Minute)
		m := upd(t, func(m *dns.Msg) { m.NameNotUsed(rrs(addr)) })
		if rcode, _ := u.update(st, alice, m, lease, nil); rcode != dns.RcodeSuccess {
			t.Errorf("name-not-in-use on an expired name: %s", dns.RcodeToString[rcode])
		}
	})
}

func TestUpdateEvent(t *testing.T) {
	st, _ := newStore(t, host+" 3600 IN A 192.0.2.1", host+" 3600 IN TXT \"hello\"")
	sub := st.Subscribe(8)
	defer sub.Close()
	u := newUpdater()
	before := serial(t, st)

	// Neither a refused nor an empty update is an event.
	if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.NameUsed(rrs(other + " A 192.0.2.1")) }), updatelease.Grant{}, nil); rcode != dns.RcodeNameError {
		t.Fatalf("failing prerequisite: %s", dns.RcodeToString[rcode])
	}
	if rcode, _ := u.update(st, alice, upd(t, func(m *dns.Msg) { m.RemoveName(rrs(other + " A 192.0.2.1")) }), updatelease.Grant{}, nil); rcode != dns.RcodeSuccess {
		t.Fatalf("no-op: %s", dns.RcodeToString[rcode])
	}

	m := upd(t, func(m *dns.Msg) {
		m.Insert(rrs(other + " 3600 IN A 192.0.2.9"))
		m.Remove(rrs(host + " 3600 IN TXT \"hello\""))
		m.Insert(rrs(host + " 3600 IN AAAA 2001:db8::1"))
	})
	if rcode, err := u.update(st, alice, m, updatelease.Grant{}, nil); rcode != dns.RcodeSuccess || err != nil {
		t.Fatalf("update: %s, %v", dns.RcodeToString[rcode], err)
	}
	if n := len(sub.C); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
	ev := <-sub.C
	if ev.Serial != before+1 || ev.Expired {
		t.Errorf("event serial %d, expired %t; want %d, false", ev.Serial, ev.Expired, before+1)
	}
	type change struct {
		name           string
		added, removed []string
	}
	want := []change{
		{other, canon([]string{other + " 3600 IN A 192.0.2.9"}), []string{}},
		{host, canon([]string{host + " 3600 IN AAAA 2001:db8::1"}), canon([]string{host + " 3600 IN TXT \"hello\""})},
	}
	var got []change
	for _, c := range ev.Changes {
		str := func(rrs []dns.RR) []string {
			out := []string{}
			for _, rr := range rrs {
				out = append(out, rr.String())
			}
			slices.Sort(out)
			return out
		}
		got = append(got, change{c.Name, str(c.Added), str(c.Removed)})
	}
	if !slices.EqualFunc(got, want, func(a, b change) bool {
		return a.name == b.name && slices.Equal(a.added, b.added) && slices.Equal(a.removed, b.removed)
	}) {
		t.Errorf("changes\n got %+v\nwant %+v", got, want)
	}
}
