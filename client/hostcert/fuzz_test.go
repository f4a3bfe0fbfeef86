package hostcert

import (
	"bytes"
	"testing"
	"time"
)

func FuzzParseCert(f *testing.F) {
	c, _ := Sign(seedKey(1), host, ula, static, t0, t0.Add(time.Hour))
	f.Add(c.Marshal())
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Marshal(), b) {
			t.Fatalf("Marshal(Parse(%x)) = %x", b, c.Marshal())
		}
		c.Verify([]PublicKey{seedKey(1).Public()}, host, ula, static, t0)
		if _, err := ParseString(c.String()); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseRevocations(f *testing.F) {
	r, _ := SignRevocations(seedKey(1), domain, 7, [][32]byte{{1}, {2}})
	f.Add(r.Marshal())
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRevocations(b)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Marshal(), b) {
			t.Fatalf("Marshal(ParseRevocations(%x)) = %x", b, r.Marshal())
		}
		r.Verify([]PublicKey{seedKey(1).Public()}, domain)
		back, err := ParseRevocationsTXT(r.TXT())
		if err != nil || !bytes.Equal(back.Marshal(), b) {
			t.Fatalf("TXT round trip: %v", err)
		}
	})
}

func FuzzParseKeyFiles(f *testing.F) {
	f.Add(FormatKeyFile(seedKey(1), seedKey(2)))
	f.Add(FormatPinFile(seedKey(1).Public(), seedKey(2).Public()))
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := ParseKeyFile(b); err == nil {
			if back, err := ParseKeyFile(FormatKeyFile(k...)); err != nil || len(back) != len(k) || back[0].Public() != k[0].Public() {
				t.Fatal(err)
			}
		}
		if p, err := ParsePinFile(b); err == nil {
			if back, err := ParsePinFile(FormatPinFile(p...)); err != nil || len(back) != len(p) {
				t.Fatal(err)
			}
		}
	})
}
