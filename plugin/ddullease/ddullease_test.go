package ddullease

import (
	"context"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/updatelease"
)

// btmmLease is the plugin as the defaults make it.
func btmmLease() *DdulLease {
	return &DdulLease{min: 30 * time.Minute, max: 2 * time.Hour, def: 90 * time.Minute, keyMax: 7 * 24 * time.Hour}
}

// reply decodes the option that Lease.Reply holds, checking that it is
// option 2 with exactly the bytes of the wanted form.
func reply(t *testing.T, o dns.EDNS0) (updatelease.Lease, bool) {
	t.Helper()
	if o == nil {
		return updatelease.Lease{}, false
	}
	local, ok := o.(*dns.EDNS0_LOCAL)
	if !ok || local.Code != updatelease.Code {
		t.Fatalf("reply option %T %v, want an EDNS0_LOCAL with code 2", o, o)
	}
	l, err := updatelease.Decode(local.Data)
	if err != nil {
		t.Fatalf("reply option: %v", err)
	}
	return l, true
}

func TestGrant(t *testing.T) {
	const (
		m   = time.Minute
		h   = time.Hour
		day = 24 * h
	)
	lease := func(secs uint32) updatelease.Lease { return updatelease.Lease{Lease: secs} }
	withKey := func(secs, key uint32) updatelease.Lease {
		return updatelease.Lease{Lease: secs, KeyLease: key, HasKeyLease: true}
	}
	tests := []struct {
		name        string
		asked       updatelease.Lease
		ok          bool // the request had an option
		records     time.Duration
		keys        time.Duration
		reply       updatelease.Lease
		replyLength int // 0: no reply option
	}{
		{name: "no option: the default, not echoed", records: 90 * m, keys: 90 * m},

		{name: "below min", asked: lease(60), ok: true, records: 30 * m, keys: 30 * m, reply: lease(1800), replyLength: 4},
		{name: "zero", asked: lease(0), ok: true, records: 30 * m, keys: 30 * m, reply: lease(1800), replyLength: 4},
		{name: "min", asked: lease(1800), ok: true, records: 30 * m, keys: 30 * m, reply: lease(1800), replyLength: 4},
		{name: "within", asked: lease(5400), ok: true, records: 90 * m, keys: 90 * m, reply: lease(5400), replyLength: 4},
		{name: "odd seconds within", asked: lease(3601), ok: true, records: h + time.Second, keys: h + time.Second, reply: lease(3601), replyLength: 4},
		{name: "max", asked: lease(7200), ok: true, records: 2 * h, keys: 2 * h, reply: lease(7200), replyLength: 4},
		{name: "above max", asked: lease(86400), ok: true, records: 2 * h, keys: 2 * h, reply: lease(7200), replyLength: 4},
		{name: "2^31-1 is the longest: max", asked: lease(1<<31 - 1), ok: true, records: 2 * h, keys: 2 * h, reply: lease(7200), replyLength: 4},
		{name: "2^31 is negative to RFC 6281: min", asked: lease(1 << 31), ok: true, records: 30 * m, keys: 30 * m, reply: lease(1800), replyLength: 4},
		{name: "2^32-1: min", asked: lease(1<<32 - 1), ok: true, records: 30 * m, keys: 30 * m, reply: lease(1800), replyLength: 4},

		// An 8-octet option is answered in 8 octets, KEY-LEASE within [min, key_max].
		{name: "key lease within", asked: withKey(5400, 86400), ok: true,
			records: 90 * m, keys: day, reply: withKey(5400, 86400), replyLength: 8},
		{name: "key lease of 7 days", asked: withKey(5400, 604800), ok: true,
			records: 90 * m, keys: 7 * day, reply: withKey(5400, 604800), replyLength: 8},
		{name: "key lease above key_max", asked: withKey(5400, 30*86400), ok: true,
			records: 90 * m, keys: 7 * day, reply: withKey(5400, 604800), replyLength: 8},
		{name: "key lease below min", asked: withKey(86400, 60), ok: true,
			records: 2 * h, keys: 30 * m, reply: withKey(7200, 1800), replyLength: 8},
		{name: "key lease zero", asked: withKey(60, 0), ok: true,
			records: 30 * m, keys: 30 * m, reply: withKey(1800, 1800), replyLength: 8},
		{name: "key lease 2^31: min", asked: withKey(5400, 1<<31), ok: true,
			records: 90 * m, keys: 30 * m, reply: withKey(5400, 1800), replyLength: 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := btmmLease().grant(tc.asked, tc.ok)
			if got.Records != tc.records || got.Keys != tc.keys {
				t.Errorf("granted records %v, keys %v; want %v, %v", got.Records, got.Keys, tc.records, tc.keys)
			}
			l, ok := reply(t, got.Reply)
			switch {
			case !ok && tc.replyLength != 0:
				t.Error("no reply option")
			case ok && tc.replyLength == 0:
				t.Errorf("reply option %v, want none", got.Reply)
			case ok && len(got.Reply.(*dns.EDNS0_LOCAL).Data) != tc.replyLength:
				t.Errorf("reply option of %d octets, want %d", len(got.Reply.(*dns.EDNS0_LOCAL).Data), tc.replyLength)
			case ok && l != tc.reply:
				t.Errorf("reply option %+v, want %+v", l, tc.reply)
			}
			// What is granted is what is echoed.
			if ok && (time.Duration(l.Lease)*time.Second != got.Records ||
				l.HasKeyLease && time.Duration(l.KeyLease)*time.Second != got.Keys) {
				t.Errorf("echoed %+v, but granted records %v, keys %v", l, got.Records, got.Keys)
			}
		})
	}
}

func TestGrantFromMessage(t *testing.T) {
	const zone = "members.example.com."
	update := func(opts ...dns.EDNS0) *dns.Msg {
		m := new(dns.Msg).SetUpdate(zone)
		a, _ := dns.NewRR("host.alice.members.example.com. 3600 IN A 192.0.2.1")
		m.Insert([]dns.RR{a})
		if len(opts) > 0 {
			m.SetEdns0(1232, false)
			o := m.IsEdns0()
			o.Option = append(o.Option, opts...)
		}
		return m
	}
	// wire packs and unpacks m, so that the option is what miekg/dns
	// makes of it (an EDNS0_UL) as in a server.
	wire := func(m *dns.Msg) *dns.Msg {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			t.Fatal(err)
		}
		return r
	}
	ask := func(secs uint32) dns.EDNS0 { return updatelease.Lease{Lease: secs}.Option() }

	tests := []struct {
		name    string
		req     *dns.Msg
		records time.Duration
		keys    time.Duration
		reply   *updatelease.Lease // nil: no reply option
		bad     bool               // malformed: an error
	}{
		{name: "UPDATE with EDNS but not the option", req: wire(update(&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})),
			records: 90 * time.Minute, keys: 90 * time.Minute},
		{name: "UPDATE without EDNS", req: wire(update()), records: 90 * time.Minute, keys: 90 * time.Minute},
		{name: "UPDATE asking 60s", req: wire(update(ask(60))),
			records: 30 * time.Minute, keys: 30 * time.Minute, reply: &updatelease.Lease{Lease: 1800}},
		{name: "UPDATE asking 60s and a key lease of 8 days", req: wire(update(updatelease.Lease{Lease: 60, KeyLease: 8 * 86400, HasKeyLease: true}.Option())),
			records: 30 * time.Minute, keys: 7 * 24 * time.Hour, reply: &updatelease.Lease{Lease: 1800, KeyLease: 7 * 86400, HasKeyLease: true}},
		{name: "UPDATE with other options too", req: wire(update(&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}, ask(5400))),
			records: 90 * time.Minute, keys: 90 * time.Minute, reply: &updatelease.Lease{Lease: 5400}},
		{name: "UPDATE with two options", req: wire(update(ask(60), ask(5400))), bad: true},
		// miekg/dns cannot unpack this one; a message built in memory can hold it.
		{name: "UPDATE with a 6-octet option", req: update(&dns.EDNS0_LOCAL{Code: updatelease.Code, Data: make([]byte, 6)}), bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.req.String()
			got, err := btmmLease().Grant(tc.req)
			if tc.req.String() != before {
				t.Error("Grant changed the request")
			}
			if (err != nil) != tc.bad {
				t.Fatalf("error %v, want malformed %t", err, tc.bad)
			}
			if tc.bad {
				return
			}
			if got.Records != tc.records || got.Keys != tc.keys {
				t.Errorf("lease %+v; want records %v, keys %v", got, tc.records, tc.keys)
			}
			l, ok := reply(t, got.Reply)
			switch {
			case ok != (tc.reply != nil):
				t.Errorf("reply option %v, want %v", got.Reply, tc.reply)
			case ok && l != *tc.reply:
				t.Errorf("reply option %+v, want %+v", l, *tc.reply)
			}
		})
	}
}

// TestServeDNS: the plugin answers nothing and changes nothing; every
// message goes on.
func TestServeDNS(t *testing.T) {
	req := new(dns.Msg).SetUpdate("members.example.com.")
	req.SetEdns0(1232, false)
	req.IsEdns0().Option = append(req.IsEdns0().Option, updatelease.Lease{Lease: 60}.Option())
	before := req.String()
	var seen *dns.Msg
	d := btmmLease()
	d.Next = test.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		seen = r
		return dns.RcodeNotImplemented, nil
	})
	rcode, err := d.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{}), req)
	if rcode != dns.RcodeNotImplemented || err != nil || seen != req || req.String() != before {
		t.Errorf("rcode %d, error %v, next saw the request: %t (unchanged: %t)", rcode, err, seen == req, req.String() == before)
	}
}
