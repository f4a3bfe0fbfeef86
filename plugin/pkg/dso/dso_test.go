package dso

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWireFormats checks each message against its octets as RFC 8490 §5.4
// and §7.1 and RFC 8765 §6 lay them out.
func TestWireFormats(t *testing.T) {
	sub, err := Subscribe(Question{Name: "h.alice.example.", Type: dns.TypeAAAA, Class: dns.ClassINET})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := dns.NewRR("h.alice.example. 60 IN A 192.0.2.1")
	add, err := AddChange(a)
	if err != nil {
		t.Fatal(err)
	}
	rm, _ := RemoveChange(a)
	push, err := Push([]Change{add, rm})
	if err != nil {
		t.Fatal(err)
	}
	name := "01 68 05 616c696365 07 6578616d706c65 00" // h.alice.example.
	for _, c := range []struct {
		what string
		m    Message
		want string
	}{
		{"Keepalive request", Message{ID: 0x1234, TLVs: []TLV{Keepalive{Inactivity: 15000, Interval: 3600000}.TLV()}},
			"1234 3000 0000 0000 0000 0000  0001 0008 00003a98 0036ee80"},
		{"Keepalive response", Message{ID: 0x1234, Response: true, TLVs: []TLV{Keepalive{Inactivity: 15000, Interval: 3600000}.TLV()}},
			"1234 b000 0000 0000 0000 0000  0001 0008 00003a98 0036ee80"},
		{"SUBSCRIBE", Message{ID: 7, TLVs: []TLV{sub}},
			"0007 3000 0000 0000 0000 0000  0040 0015 " + name + " 001c 0001"},
		{"SUBSCRIBE refused, with a retry delay", Message{ID: 7, Response: true, Rcode: dns.RcodeRefused, TLVs: []TLV{RetryDelay(300000)}},
			"0007 b005 0000 0000 0000 0000  0002 0004 000493e0"},
		{"DSOTYPENI", Message{ID: 9, Response: true, Rcode: RcodeDSOTypeNI},
			"0009 b00b 0000 0000 0000 0000"},
		{"PUSH of an add and a removal", Message{TLVs: []TLV{push}},
			"0000 3000 0000 0000 0000 0000  0041 003e " +
				name + " 0001 0001 0000003c 0004 c0000201 " +
				name + " 0001 0001 ffffffff 0004 c0000201"},
		{"UNSUBSCRIBE", Message{TLVs: []TLV{Unsubscribe(7)}},
			"0000 3000 0000 0000 0000 0000  0042 0002 0007"},
	} {
		got, err := c.m.Pack()
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if want := unhex(t, c.want); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %x\nwant %x", c.what, got, want)
		}
		back, err := Parse(got)
		if err != nil {
			t.Fatalf("%s: parsing what Pack wrote: %v", c.what, err)
		}
		if back.ID != c.m.ID || back.Response != c.m.Response || back.Rcode != c.m.Rcode || len(back.TLVs) != len(c.m.TLVs) {
			t.Errorf("%s: parsed back as %+v", c.what, back)
		}
	}
	q, err := ParseSubscribe(sub.Data)
	if err != nil || q.Name != "h.alice.example." || q.Type != dns.TypeAAAA || q.Class != dns.ClassINET {
		t.Errorf("ParseSubscribe: %+v, %v", q, err)
	}
	changes, err := ParsePush(push.Data)
	if err != nil || len(changes) != 2 || changes[1].TTL != TTLRemove {
		t.Fatalf("ParsePush: %+v, %v", changes, err)
	}
	if rr, err := changes[0].RR(); err != nil || rr.String() != a.String() {
		t.Errorf("the added record read back as %v, %v", rr, err)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, c := range []struct{ what, hex string }{
		{"a query", "0001 0100 0001 0000 0000 0000"},
		{"a question count", "0001 3000 0001 0000 0000 0000 0001 0008 0000000000000000"},
		{"an additional count", "0001 3000 0000 0000 0000 0001 0001 0008 0000000000000000"},
		{"a request with no TLV", "0001 3000 0000 0000 0000 0000"},
		{"a TLV past the end", "0001 3000 0000 0000 0000 0000 0001 0009 0000000000000000"},
		{"half a TLV header", "0001 3000 0000 0000 0000 0000 00"},
	} {
		if _, err := Parse(unhex(t, c.hex)); err == nil {
			t.Errorf("%s was parsed", c.what)
		}
	}
	if _, err := ParseSubscribe(unhex(t, "01 61 c0 0c 0001 0001")); !errors.Is(err, ErrMalformed) {
		t.Errorf("a SUBSCRIBE with a compression pointer: %v", err)
	}
	if _, err := ParseSubscribe(unhex(t, "01 61 00 0001")); !errors.Is(err, ErrMalformed) {
		t.Errorf("a SUBSCRIBE without its class: %v", err)
	}
	if _, err := ParsePush(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("an empty PUSH: %v", err)
	}
	if _, err := ParsePush(unhex(t, "00 0001 0001 0000003c 0004 c000")); !errors.Is(err, ErrMalformed) {
		t.Errorf("a PUSH whose RDATA runs out: %v", err)
	}
	if _, err := ParseKeepalive(make([]byte, 7)); err == nil {
		t.Error("a 7-octet Keepalive was read")
	}
	if _, err := ParseUnsubscribe(make([]byte, 3)); err == nil {
		t.Error("a 3-octet UNSUBSCRIBE was read")
	}
}

// The fuzz targets: whatever a parser accepts packs back to the same
// octets.

func FuzzParse(f *testing.F) {
	f.Add(unhex(f, "1234 3000 0000 0000 0000 0000 0001 0008 00003a98 0036ee80"))
	f.Add(unhex(f, "0000 3000 0000 0000 0000 0000 0042 0002 0007"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		again, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		// Pack writes zero in the header's flag bits other than QR.
		want := append([]byte(nil), b...)
		want[2] &= 0xB8
		want[3] &= 0x0F
		if !bytes.Equal(again, want) {
			t.Fatalf("%x packed back as %x", b, again)
		}
	})
}

func FuzzParseSubscribe(f *testing.F) {
	f.Add(unhex(f, "01 68 05 616c696365 07 6578616d706c65 00 001c 0001"))
	f.Fuzz(func(t *testing.T, d []byte) {
		q, err := ParseSubscribe(d)
		if err != nil {
			return
		}
		tlv, err := Subscribe(q)
		if err != nil {
			t.Fatalf("%+v does not pack: %v", q, err)
		}
		if !bytes.Equal(tlv.Data, d) && !strings.EqualFold(string(tlv.Data), string(d)) {
			t.Fatalf("%x packed back as %x", d, tlv.Data)
		}
	})
}

func FuzzParsePush(f *testing.F) {
	f.Add(unhex(f, "01 68 00 0001 0001 0000003c 0004 c0000201 01 68 00 0001 0001 ffffffff 0004 c0000201"))
	f.Add(unhex(f, "01 68 00 00ff 00ff fffffffe 0000"))
	f.Fuzz(func(t *testing.T, d []byte) {
		changes, err := ParsePush(d)
		if err != nil {
			return
		}
		tlv, err := Push(changes)
		if err != nil {
			t.Fatalf("%+v does not pack: %v", changes, err)
		}
		if !bytes.Equal(tlv.Data, d) && !strings.EqualFold(string(tlv.Data), string(d)) {
			t.Fatalf("%x packed back as %x", d, tlv.Data)
		}
		for _, c := range changes {
			c.RR() // must not panic, whatever the data
		}
	})
}

func FuzzFixedTLVs(f *testing.F) {
	f.Add(unhex(f, "00003a98 0036ee80"))
	f.Add(unhex(f, "0007"))
	f.Fuzz(func(t *testing.T, d []byte) {
		if k, err := ParseKeepalive(d); err == nil && !bytes.Equal(k.TLV().Data, d) {
			t.Fatalf("Keepalive %x packed back as %x", d, k.TLV().Data)
		}
		if ms, err := ParseRetryDelay(d); err == nil && !bytes.Equal(RetryDelay(ms).Data, d) {
			t.Fatalf("Retry Delay %x packed back differently", d)
		}
		if id, err := ParseUnsubscribe(d); err == nil && !bytes.Equal(Unsubscribe(id).Data, d) {
			t.Fatalf("UNSUBSCRIBE %x packed back differently", d)
		}
	})
}
