package esp

import (
	"bytes"
	"testing"
)

func TestClassify(t *testing.T) {
	esp := []byte{0, 0, 1, 0, 0, 0, 0, 1}
	cases := []struct {
		name string
		in   []byte
		kind Kind
		out  []byte
	}{
		{"empty", nil, Invalid, nil},
		{"keepalive", []byte{0xFF}, Keepalive, nil},
		{"one other octet", []byte{0x00}, Invalid, nil},
		{"two octets", []byte{0xFF, 0xFF}, Invalid, nil},
		{"three octets", []byte{0, 0, 0}, Invalid, nil},
		{"bare marker", []byte{0, 0, 0, 0}, Invalid, nil},
		{"non-esp", []byte{0, 0, 0, 0, 'h', 'i'}, NonESP, []byte("hi")},
		{"esp", esp, ESP, esp},
		{"esp too short", esp[:7], Invalid, nil},
		{"reserved spi 1", []byte{0, 0, 0, 1, 0, 0, 0, 1}, Invalid, nil},
		{"reserved spi 255", []byte{0, 0, 0, 255, 0, 0, 0, 1}, Invalid, nil},
		{"spi max", []byte{255, 255, 255, 255, 0, 0, 0, 1}, ESP, []byte{255, 255, 255, 255, 0, 0, 0, 1}},
	}
	for _, c := range cases {
		k, out := Classify(c.in)
		if k != c.kind || !bytes.Equal(out, c.out) {
			t.Errorf("%s: Classify = %v %x, want %v %x", c.name, k, out, c.kind, c.out)
		}
	}
	if PacketSPI(esp) != 256 {
		t.Error("PacketSPI")
	}
	hs := AppendNonESPMarker([]byte{})
	hs = append(hs, "hello"...)
	if k, out := Classify(hs); k != NonESP || string(out) != "hello" {
		t.Errorf("marker round trip: %v %q", k, out)
	}
	if k, _ := Classify(AppendKeepalive(nil)); k != Keepalive {
		t.Error("keepalive round trip")
	}
	for k, want := range map[Kind]string{Invalid: "invalid", ESP: "esp", Keepalive: "keepalive", NonESP: "non-esp"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q", k, k.String())
		}
	}
	// Sealed packets classify as ESP.
	tx, _ := pair(t, AES256GCM, false)
	pkt, _ := tx.Seal(nil, nil)
	if k, out := Classify(pkt); k != ESP || len(out) != len(pkt) {
		t.Errorf("sealed packet: %v", k)
	}
}
