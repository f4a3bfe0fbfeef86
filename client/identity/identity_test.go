package identity

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// fixedRandom gives the ULA's 7 random octets 12 34 56 78 9a bc de (the
// invented ones of the example ULA below), then, for a
// random EUI-64, ff ff ff ff ff ff ff ff.
func fixedRandom() *bytes.Reader {
	return bytes.NewReader([]byte{
		0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	})
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mac   net.HardwareAddr
		eui   string // raw EUI-64
		label string
		ula   string
	}{
		{
			// RFC 6281 §3's example label is
			// the raw EUI-64; the ULA's interface identifier is the modified
			// one, and the whole ULA is the spec's example address.
			name:  "RFC 6281 example MAC",
			mac:   net.HardwareAddr{0x00, 0x22, 0x69, 0x8e, 0x34, 0x2a},
			eui:   "00-22-69-FF-FE-8E-34-2A",
			label: "AutoTunnel-00-22-69-FF-FE-8E-34-2A",
			ula:   "fd12:3456:789a:bcde:0222:69ff:fe8e:342a",
		},
		{
			// A locally administered MAC (U/L bit already set): the raw
			// EUI-64 keeps the bit, the interface identifier clears it.
			name:  "locally administered MAC",
			mac:   net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55},
			eui:   "02-11-22-FF-FE-33-44-55",
			label: "AutoTunnel-02-11-22-FF-FE-33-44-55",
			ula:   "fd12:3456:789a:bcde:0011:22ff:fe33:4455",
		},
		{
			name:  "8-octet hardware address is the EUI-64",
			mac:   net.HardwareAddr{0x00, 0x0a, 0x95, 0xff, 0xfe, 0x01, 0x02, 0x03},
			eui:   "00-0A-95-FF-FE-01-02-03",
			label: "AutoTunnel-00-0A-95-FF-FE-01-02-03",
			ula:   "fd12:3456:789a:bcde:020a:95ff:fe01:0203",
		},
		// No usable MAC: the random octets ff…ff become fe ff … ff, local
		// (0x02 set) and individual (0x01 clear); the interface identifier
		// is fc ff … ff.
		{name: "short MAC", mac: net.HardwareAddr{1, 2, 3, 4}},
		{name: "no MAC (tun, ppp)", mac: nil},
		{name: "InfiniBand's 20 octets", mac: make(net.HardwareAddr, 20)},
		{name: "all-zero MAC", mac: make(net.HardwareAddr, 6)},
		{name: "multicast MAC", mac: net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.eui == "" {
				tc.eui = "FE-FF-FF-FF-FF-FF-FF-FF"
				tc.label = "AutoTunnel-FE-FF-FF-FF-FF-FF-FF-FF"
				tc.ula = "fd12:3456:789a:bcde:fcff:ffff:ffff:ffff"
			}
			id, err := New("eth0", tc.mac, fixedRandom())
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimPrefix(Label(id.EUI64), LabelPrefix); got != tc.eui {
				t.Errorf("EUI64 = %s, want %s", got, tc.eui)
			}
			if id.Label != tc.label {
				t.Errorf("Label = %s, want %s", id.Label, tc.label)
			}
			if want := netip.MustParseAddr(tc.ula); id.ULA != want {
				t.Errorf("ULA = %s, want %s", id.ULA, want)
			}
			if id.Interface != "eth0" {
				t.Errorf("Interface = %q", id.Interface)
			}
			ula := id.ULA.As16()
			if !netip.MustParsePrefix("fd00::/8").Contains(id.ULA) {
				t.Errorf("ULA %s is not in fd00::/8", id.ULA)
			}
			if !bytes.Equal(ula[1:8], []byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde}) {
				t.Errorf("ULA %s does not keep the 7 random octets", id.ULA)
			}
			if iid := ModifiedEUI64(id.EUI64); !bytes.Equal(ula[8:], iid[:]) {
				t.Errorf("ULA %s does not end in the modified EUI-64 %x", id.ULA, iid)
			}
		})
	}
}

func TestNewRandomEUI64IsLocal(t *testing.T) {
	// Whatever the random octets, a made-up EUI-64 is local and individual.
	for _, first := range []byte{0x00, 0x01, 0x02, 0x03, 0xfd, 0xff} {
		rnd := bytes.NewReader([]byte{0, 0, 0, 0, 0, 0, 0, first, 1, 2, 3, 4, 5, 6, 7})
		id, err := New("tun0", nil, rnd)
		if err != nil {
			t.Fatal(err)
		}
		if id.EUI64[0]&0x02 == 0 || id.EUI64[0]&0x01 != 0 {
			t.Errorf("random octet %#02x gave EUI-64 %x: not local and individual", first, id.EUI64)
		}
		if id.EUI64[0]&^0x03 != first&^0x03 || id.EUI64[7] != 7 {
			t.Errorf("random octet %#02x gave EUI-64 %x: random bits lost", first, id.EUI64)
		}
	}
}

func TestNewShortRandom(t *testing.T) {
	if _, err := New("eth0", net.HardwareAddr{0, 0x22, 0x69, 1, 2, 3}, bytes.NewReader(make([]byte, 6))); err == nil {
		t.Error("6 random octets made a ULA")
	}
	if _, err := New("tun0", nil, bytes.NewReader(make([]byte, 10))); err == nil {
		t.Error("10 random octets made a ULA and a random EUI-64")
	}
}

func TestParseLabel(t *testing.T) {
	want := [8]byte{0x00, 0x22, 0x69, 0xff, 0xfe, 0x8e, 0x34, 0x2a}
	for _, s := range []string{
		"AutoTunnel-00-22-69-FF-FE-8E-34-2A",
		"autotunnel-00-22-69-ff-fe-8e-34-2a",
		"AUTOTUNNEL-00-22-69-Ff-fE-8e-34-2A",
	} {
		got, err := ParseLabel(s)
		if err != nil || got != want {
			t.Errorf("ParseLabel(%q) = %x, %v", s, got, err)
		}
	}
	// Apple's form (modified EUI-64) is 8 hex octets too.
	if got, err := ParseLabel("AutoTunnel-02-22-69-FF-FE-8E-34-2A"); err != nil || got != ModifiedEUI64(want) {
		t.Errorf("Apple's label: %x, %v", got, err)
	}
	for _, s := range []string{
		"",
		"AutoTunnel-",
		"AutoTunnel-00-22-69-FF-FE-8E-34",
		"AutoTunnel-00-22-69-FF-FE-8E-34-2A-00",
		"AutoTunnel-00:22:69:FF:FE:8E:34:2A",
		"AutoTunnel-0G-22-69-FF-FE-8E-34-2A",
		"AutoTunnel_00-22-69-FF-FE-8E-34-2A",
		"AutoTunnel-00-22-69-FF-FE-8E-34-2A.alice",
		"Autotunnel+00-22-69-FF-FE-8E-34-2A",
	} {
		if got, err := ParseLabel(s); !errors.Is(err, ErrNotLabel) {
			t.Errorf("ParseLabel(%q) = %x, %v; want ErrNotLabel", s, got, err)
		}
	}
}

func FuzzParseLabel(f *testing.F) {
	f.Add("AutoTunnel-00-22-69-FF-FE-8E-34-2A")
	f.Add("autotunnel-02-22-69-ff-fe-8e-34-2a")
	f.Fuzz(func(t *testing.T, s string) {
		eui, err := ParseLabel(s)
		if err != nil {
			return
		}
		if !strings.EqualFold(Label(eui), s) {
			t.Fatalf("ParseLabel(%q) = %x, which Label writes %q", s, eui, Label(eui))
		}
	})
}
