package tsigupdate

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/btmm"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
)

var aliceKey = keyfile.Key{Name: alice, Algorithm: dns.HmacSHA256, Secret: "F42STmDnGmFG1jyejcOLBJFIHgcGsAPxrqiDTI9YerQ="}

// sign signs m with k as a client would and returns what the server parses.
// test.ResponseWriter reports every MAC as good, as the server would have
// found this one.
func sign(t *testing.T, m *dns.Msg, k keyfile.Key) *dns.Msg {
	t.Helper()
	m.SetTsig(k.Name, k.Algorithm, 300, time.Now().Unix())
	buf, _, err := dns.TsigGenerate(m, k.Secret, "", false)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestServeDNS(t *testing.T) {
	const addr = host + " 3600 IN A 192.0.2.1"
	granted := updatelease.Lease{Lease: 1800}.Option()
	lease := Lease{Records: 30 * time.Minute, Keys: 30 * time.Minute, Reply: granted}
	insert := func(name string) *dns.Msg {
		m := new(dns.Msg).SetUpdate(zone)
		m.Insert(rrs(name + " 3600 IN A 192.0.2.1"))
		m.SetEdns0(1232, false)
		o := m.IsEdns0()
		o.Option = append(o.Option, updatelease.Lease{Lease: 60}.Option())
		return m
	}
	stranger := keyfile.Key{Name: "carol.members.example.com.", Algorithm: dns.HmacSHA256, Secret: aliceKey.Secret}

	tests := []struct {
		name      string
		req       *dns.Msg
		key       *keyfile.Key // signs req if not nil
		lease     Lease
		rcode     int
		tsigError uint16
		stored    []string // the records at host afterwards
		echo      bool     // the reply carries the granted lease
	}{
		{name: "signed", req: insert(host), key: &aliceKey, lease: lease,
			rcode: dns.RcodeSuccess, stored: []string{addr}, echo: true},
		{name: "signed, no lease asked", req: insert(host), key: &aliceKey, lease: Lease{},
			rcode: dns.RcodeSuccess, stored: []string{addr}},
		{name: "unsigned", req: insert(host), lease: lease, rcode: dns.RcodeRefused},
		{name: "unknown key", req: insert(host), key: &stranger, lease: lease,
			rcode: dns.RcodeNotAuth, tsigError: dns.RcodeBadKey},
		{name: "malformed lease option", req: insert(host), key: &aliceKey, lease: Lease{Malformed: true},
			rcode: dns.RcodeFormatError},
		{name: "refused: no lease echoed", req: insert("bob.members.example.com."), key: &aliceKey, lease: lease,
			rcode: dns.RcodeRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := newStore(t)
			u := newUpdater()
			u.zone = btmm.NewForTest(zone, st, aliceKey)
			u.Next = test.NextHandler(dns.RcodeServerFailure, nil)
			req := wire(t, tc.req)
			if tc.key != nil {
				req = sign(t, tc.req, *tc.key)
			}

			w := dnstest.NewRecorder(&test.ResponseWriter{})
			if _, err := u.ServeDNS(WithLease(context.Background(), tc.lease), w, req); err != nil {
				t.Fatal(err)
			}
			resp := w.Msg
			if resp == nil {
				t.Fatal("no reply written")
			}
			if resp.Rcode != tc.rcode || resp.Opcode != dns.OpcodeUpdate || !resp.Response {
				t.Errorf("reply rcode %s opcode %d qr %t, want %s to an UPDATE",
					dns.RcodeToString[resp.Rcode], resp.Opcode, resp.Response, dns.RcodeToString[tc.rcode])
			}
			sig := resp.IsTsig()
			switch {
			case tc.key == nil && sig != nil:
				t.Error("the reply to an unsigned request is signed")
			case tc.key != nil && sig == nil:
				t.Error("the reply to a signed request is unsigned")
			case sig != nil && sig.Error != tc.tsigError:
				t.Errorf("TSIG error %d, want %d", sig.Error, tc.tsigError)
			}

			l, ok, err := updatelease.From(resp)
			switch {
			case err != nil:
				t.Errorf("lease in the reply: %v", err)
			case ok != tc.echo:
				t.Errorf("reply carries a lease: %t, want %t", ok, tc.echo)
			case ok && l != (updatelease.Lease{Lease: 1800}):
				t.Errorf("reply's lease %+v, want 1800s", l)
			}

			if got := lookup(t, st, host); !slices.Equal(got, canon(tc.stored)) {
				t.Errorf("records at %s: %q, want %q", host, got, tc.stored)
			}
			if tc.echo {
				if recs := stored(t, st, host); len(recs) != 1 || !recs[0].Expires.Equal(start.Add(30*time.Minute)) {
					t.Errorf("stored %+v, want one record with a 30m lease", recs)
				}
			}
		})
	}
}

func TestServeDNSOtherZone(t *testing.T) {
	st, _ := newStore(t)
	u := newUpdater()
	u.zone = btmm.NewForTest(zone, st, aliceKey)
	u.Next = test.NextHandler(dns.RcodeNotImplemented, nil)
	m := new(dns.Msg).SetUpdate("example.org.")
	m.Insert(rrs("www.example.org. 3600 IN A 192.0.2.1"))
	w := dnstest.NewRecorder(&test.ResponseWriter{})
	if rcode, _ := u.ServeDNS(context.Background(), w, wire(t, m)); rcode != dns.RcodeNotImplemented || w.Msg != nil {
		t.Errorf("an UPDATE for another zone got rcode %d and reply %v, want it passed on", rcode, w.Msg)
	}
}
