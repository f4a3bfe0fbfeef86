package llqopt

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/miekg/dns"
)

func TestWireFormat(t *testing.T) {
	m := new(dns.Msg).SetQuestion("laptop.alice.members.example.com.", dns.TypeAAAA)
	Set(m, 1232, Option{Opcode: Setup, Lease: 7200})
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	// RFC 8764 §3.2: code 1, length 18, version 1, opcode 1, error 0, id 0, lease 7200.
	want, _ := hex.DecodeString("00010012" + "0001" + "0001" + "0000" + "0000000000000000" + "00001c20")
	if !bytes.HasSuffix(b, want) {
		t.Fatalf("option on the wire: % x, want it to end % x", b, want)
	}
	back := new(dns.Msg)
	if err := back.Unpack(b); err != nil {
		t.Fatal(err)
	}
	opts, err := From(back)
	if err != nil || len(opts) != 1 || opts[0] != (Option{Opcode: Setup, Lease: 7200}) {
		t.Fatalf("From: %+v %v", opts, err)
	}
}

func TestSetReplacesAndKeepsOthers(t *testing.T) {
	m := new(dns.Msg)
	m.SetEdns0(4096, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID}, Option{Opcode: Setup}.EDNS0())
	Set(m, 1232, Option{Opcode: Event, ID: 7}, Option{Opcode: Event, ID: 8})
	opts, _ := From(m)
	if len(opts) != 2 || opts[0].ID != 7 || opts[1].ID != 8 || len(m.IsEdns0().Option) != 3 {
		t.Fatalf("after Set: %v", m.IsEdns0())
	}
	if m.IsEdns0().UDPSize() != 4096 {
		t.Fatal("Set changed the OPT RR's size")
	}
}

func TestVersion(t *testing.T) {
	m := new(dns.Msg)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_LLQ{Code: Code, Version: 2})
	if _, err := From(m); err != ErrVersion(2) {
		t.Fatalf("version 2: %v", err)
	}
}

func FuzzFrom(f *testing.F) {
	m := new(dns.Msg).SetQuestion("a.example.", dns.TypeA)
	Set(m, 1232, Option{Opcode: Refresh, ID: 1 << 60, Lease: 900})
	b, _ := m.Pack()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		opts, err := From(m)
		if err != nil {
			return
		}
		Set(m, 1232, opts...)
		again, err := From(m)
		if err != nil || len(again) != len(opts) {
			t.Fatalf("Set then From: %v %v, want %v", again, err, opts)
		}
		for i := range opts {
			if again[i] != opts[i] {
				t.Fatalf("option %d: %+v, want %+v", i, again[i], opts[i])
			}
		}
	})
}
