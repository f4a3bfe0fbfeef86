package updatelease

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/miekg/dns"
)

func TestDecodeEncode(t *testing.T) {
	tests := []struct {
		name string
		data string // hex
		want Lease
	}{
		{"lease only", "00001518", Lease{Lease: 5400}},
		{"lease and key lease", "0000151800093a80", Lease{Lease: 5400, KeyLease: 7 * 86400, HasKeyLease: true}},
		{"zero key lease keeps 8 bytes", "0000151800000000", Lease{Lease: 5400, HasKeyLease: true}},
		// Values the old signed draft would call negative pass through.
		{"high bit", "ffffffff80000000", Lease{Lease: 0xffffffff, KeyLease: 0x80000000, HasKeyLease: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, _ := hex.DecodeString(tt.data)
			got, err := Decode(data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got != tt.want {
				t.Errorf("Decode = %+v, want %+v", got, tt.want)
			}
			if enc := tt.want.Encode(); !bytes.Equal(enc, data) {
				t.Errorf("Encode = %x, want %x", enc, data)
			}
		})
	}
}

func TestEncodeIgnoresKeyLeaseWithoutFlag(t *testing.T) {
	got := Lease{Lease: 5400, KeyLease: 99}.Encode()
	if want := []byte{0, 0, 0x15, 0x18}; !bytes.Equal(got, want) {
		t.Errorf("Encode = %x, want %x", got, want)
	}
}

func TestDecodeMalformed(t *testing.T) {
	for _, n := range []int{0, 1, 3, 5, 6, 7, 9, 12, 16} {
		if _, err := Decode(make([]byte, n)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%d bytes) error = %v, want ErrMalformed", n, err)
		}
	}
}

// update returns a DNS Update for example.com. with opts in its OPT RR.
func update(opts ...dns.EDNS0) *dns.Msg {
	m := new(dns.Msg)
	m.SetUpdate("example.com.")
	m.Id = 0x1234
	m.SetEdns0(1232, false)
	o := m.IsEdns0()
	o.Option = append(o.Option, opts...)
	return m
}

// optionWire returns the bytes of the first EDNS(0) option in a packed
// message with exactly one OPT RR (with root owner) as its last record.
func optionWire(t *testing.T, wire []byte) []byte {
	t.Helper()
	// OPT RR: name (1) type (2) class (2) ttl (4) rdlength (2) rdata.
	i := bytes.LastIndex(wire, []byte{0, 0, byte(dns.TypeOPT)})
	if i < 0 {
		t.Fatalf("no OPT RR in %x", wire)
	}
	rdlen := int(wire[i+9])<<8 | int(wire[i+10])
	return wire[i+11 : i+11+rdlen]
}

func TestOptionWire(t *testing.T) {
	tests := []struct {
		name  string
		lease Lease
		wire  string // the option as on the wire: code, length, data
	}{
		{"5400 s", Lease{Lease: 5400}, "0002000400001518"},
		{"5400 s, key 7 days", Lease{Lease: 5400, KeyLease: 604800, HasKeyLease: true}, "0002000800001518" + "00093a80"},
		{"5400 s, key 0", Lease{Lease: 5400, HasKeyLease: true}, "0002000800001518" + "00000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire, err := update(tt.lease.Option()).Pack()
			if err != nil {
				t.Fatalf("Pack: %v", err)
			}
			if got := hex.EncodeToString(optionWire(t, wire)); got != tt.wire {
				t.Errorf("option on the wire = %s, want %s", got, tt.wire)
			}

			m := new(dns.Msg)
			if err := m.Unpack(wire); err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			// miekg/dns unpacks option 2 as its own type.
			if o := m.IsEdns0().Option[0]; o.Option() != Code {
				t.Fatalf("unpacked option %T has code %d", o, o.Option())
			} else if _, isUL := o.(*dns.EDNS0_UL); !isUL {
				t.Errorf("unpacked option is %T, want *dns.EDNS0_UL", o)
			}
			got, ok, err := From(m)
			if err != nil || !ok {
				t.Fatalf("From = %+v, %v, %v", got, ok, err)
			}
			want := tt.lease
			if want.HasKeyLease && want.KeyLease == 0 {
				// The limitation From documents: miekg/dns keeps no
				// trace of the length, so this reads as 4 bytes.
				want.HasKeyLease = false
			}
			if got != want {
				t.Errorf("From(unpacked) = %+v, want %+v", got, want)
			}

			// Before packing, From reads the EDNS0_LOCAL exactly.
			if got, _, _ := From(update(tt.lease.Option())); got != tt.lease {
				t.Errorf("From(built) = %+v, want %+v", got, tt.lease)
			}
		})
	}
}

func TestFrom(t *testing.T) {
	local := func(hexdata string) dns.EDNS0 {
		b, _ := hex.DecodeString(hexdata)
		return &dns.EDNS0_LOCAL{Code: Code, Data: b}
	}
	tests := []struct {
		name    string
		m       *dns.Msg
		want    Lease
		ok      bool
		wantErr error
	}{
		{"nil message", nil, Lease{}, false, nil},
		{"no OPT", func() *dns.Msg { m := new(dns.Msg); m.SetUpdate("example.com."); return m }(), Lease{}, false, nil},
		{"no option 2", update(&dns.EDNS0_NSID{Code: dns.EDNS0NSID}), Lease{}, false, nil},
		{"EDNS0_UL", update(&dns.EDNS0_UL{Code: dns.EDNS0UL, Lease: 60, KeyLease: 120}), Lease{60, 120, true}, true, nil},
		{"EDNS0_UL without key lease", update(&dns.EDNS0_UL{Code: dns.EDNS0UL, Lease: 60}), Lease{Lease: 60}, true, nil},
		{"EDNS0_LOCAL", update(&dns.EDNS0_NSID{Code: dns.EDNS0NSID}, local("0000003c")), Lease{Lease: 60}, true, nil},
		{"EDNS0_LOCAL 8 bytes", update(local("0000003c00000000")), Lease{60, 0, true}, true, nil},
		{"malformed EDNS0_LOCAL", update(local("000000003c00")), Lease{}, false, ErrMalformed},
		{"twice", update(local("0000003c"), &dns.EDNS0_UL{Code: dns.EDNS0UL, Lease: 60}), Lease{}, false, ErrDuplicate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := From(tt.m)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("From error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want || ok != tt.ok {
				t.Errorf("From = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestMalformedOnTheWire pins down what miekg/dns does with a code-2
// option of the wrong length arriving on the wire: Unpack fails for the
// whole message and drops the additional section, so From cannot see the
// option. A miekg/dns server answers FORMERR before any handler runs.
// Should a future miekg/dns keep such an option as raw bytes instead,
// this test fails and From's ErrMalformed path becomes the one that
// matters.
func TestMalformedOnTheWire(t *testing.T) {
	for _, n := range []int{3, 6, 12} {
		// Pack a well-formed message with an EDNS0_LOCAL of the wrong
		// length: miekg/dns packs EDNS0_LOCAL data without looking.
		data := bytes.Repeat([]byte{0x42}, n)
		wire, err := update(&dns.EDNS0_LOCAL{Code: Code, Data: data}).Pack()
		if err != nil {
			t.Fatalf("%d bytes: Pack: %v", n, err)
		}
		want := append([]byte{0, Code, 0, byte(n)}, data...)
		if got := optionWire(t, wire); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: crafted option = %x, want %x", n, got, want)
		}

		m := new(dns.Msg)
		err = m.Unpack(wire)
		if err == nil {
			t.Fatalf("%d bytes: Unpack succeeded; miekg/dns now accepts malformed option 2", n)
		}
		if !errors.Is(err, dns.ErrBuf) {
			t.Logf("%d bytes: Unpack error changed: %v", n, err)
		}
		if m.Extra != nil {
			t.Errorf("%d bytes: Unpack kept the additional section %v", n, m.Extra)
		}
		if _, ok, err := From(m); ok || err != nil {
			t.Errorf("%d bytes: From after failed Unpack = %v, %v; want not found", n, ok, err)
		}
		if _, err := Decode(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d bytes: Decode error = %v, want ErrMalformed", n, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{"", "00001518", "0000151800093a80", "000015", "0000151800093a", "0000151800093a8000"} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode error %v is not ErrMalformed", err)
			}
			if len(b) == 4 || len(b) == 8 {
				t.Fatalf("Decode(%x) failed: %v", b, err)
			}
			return
		}
		if len(b) != 4 && len(b) != 8 {
			t.Fatalf("Decode accepted %d bytes", len(b))
		}
		if l.HasKeyLease != (len(b) == 8) {
			t.Fatalf("Decode(%x).HasKeyLease = %v", b, l.HasKeyLease)
		}
		if enc := l.Encode(); !bytes.Equal(enc, b) {
			t.Fatalf("Encode(Decode(%x)) = %x", b, enc)
		}
	})
}
