package esp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestAppendKeyLog(t *testing.T) {
	keymat := unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f a0a1a2a3")
	cc, _ := NewSA(Config{SPI: 0x01020304, Suite: ChaCha20Poly1305, Keymat: keymat})
	gcm, _ := NewSA(Config{SPI: 0x1ff, Suite: AES256GCM, Keymat: keymat})
	gcm32, _ := NewSA(Config{SPI: 0xfedcba98, Suite: AES256GCM, Keymat: keymat, NoESN: true})
	const key = "0x808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3"
	cases := []struct {
		sa       *SA
		src, dst netip.Addr
		want     string
	}{
		{cc, netip.Addr{}, netip.Addr{},
			`"IPv4","*","*","0x01020304","ChaCha20 with Poly1305 [RFC7634]","` + key + `","NULL","","64-bit","0"` + "\n"},
		{gcm, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:198.51.100.7"),
			`"IPv4","192.0.2.1","198.51.100.7","0x000001ff","AES-GCM with 16 octet ICV [RFC4106]","` + key + `","NULL","","64-bit","0"` + "\n"},
		{gcm, netip.Addr{}, netip.MustParseAddr("2001:db8::1"),
			`"IPv6","*","2001:db8::1","0x000001ff","AES-GCM with 16 octet ICV [RFC4106]","` + key + `","NULL","","64-bit","0"` + "\n"},
		{gcm32, netip.Addr{}, netip.Addr{},
			`"IPv4","*","*","0xfedcba98","AES-GCM with 16 octet ICV [RFC4106]","` + key + `","NULL","","32-bit","0"` + "\n"},
	}
	for _, c := range cases {
		if got := string(c.sa.AppendKeyLog(nil, c.src, c.dst)); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
	// Appending keeps what b held.
	two := gcm32.AppendKeyLog(gcm.AppendKeyLog(nil, netip.Addr{}, netip.Addr{}), netip.Addr{}, netip.Addr{})
	if got := strings.Count(string(two), "\n"); got != 2 || !bytes.HasSuffix(two, []byte(cases[3].want)) {
		t.Errorf("two lines appended: %q", two)
	}
}

// TestKeyLogTshark hands tshark a key log and a capture of packets sealed
// here, UDP-encapsulated in IPv4 as the tunnel sends them, and checks that
// it finds the inner IPv6 packets; for the SA without ESN it must also find
// the ICV good (Wireshark 4.0 cannot check ESN ICVs: see keylog.go). The
// lab test (test/lab_keylog_test.go) does the same with the tunnel's own
// key log and packets captured across NATs.
func TestKeyLogTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tshark is not installed (Debian package tshark)")
		}
		t.Skip("tshark is not installed (Debian package tshark)")
	}
	keymat := make([]byte, KeymatLen)
	for i := range keymat {
		keymat[i] = byte(0x40 + i)
	}
	src, dst := netip.MustParseAddr("fd00:1::1"), netip.MustParseAddr("fd00:2::2")
	sas := []struct {
		spi   uint32
		noESN bool
	}{{0x1001, false}, {0x1002, true}}
	dir := t.TempDir()
	var keylog []byte
	var pcap bytes.Buffer
	pcap.Write(pcapHeader())
	for _, s := range sas {
		sa, err := NewSA(Config{SPI: s.spi, Suite: AES256GCM, Keymat: keymat, NoESN: s.noESN})
		if err != nil {
			t.Fatal(err)
		}
		keylog = sa.AppendKeyLog(keylog, netip.Addr{}, netip.Addr{})
		for range 2 {
			pkt, err := sa.Seal(nil, echoRequest(src, dst))
			if err != nil {
				t.Fatal(err)
			}
			pcapRecord(&pcap, udp4(pkt, 4500))
		}
	}
	conf := filepath.Join(dir, "wireshark")
	if err := os.Mkdir(conf, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "esp_sa"), keylog, 0o600); err != nil {
		t.Fatal(err)
	}
	capFile := filepath.Join(dir, "esp.pcap")
	if err := os.WriteFile(capFile, pcap.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tshark, "-n", "-r", capFile,
		"-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE",
		"-T", "fields", "-E", "separator=,", "-e", "esp.spi", "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "icmpv6.type", "-e", "esp.icv_good")
	cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+conf)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.Bytes())
	}
	t.Logf("tshark:\n%s%s", out, stderr.Bytes())
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 {
		t.Fatalf("tshark shows %d packets, want 4", len(lines))
	}
	for i, l := range lines {
		s := sas[i/2]
		f := strings.Split(l, ",")
		if len(f) != 5 {
			t.Errorf("packet %d: %q", i+1, l)
			continue
		}
		if want := fmt.Sprintf("0x%08x", s.spi); f[0] != want {
			t.Errorf("packet %d: SPI %s, want %s", i+1, f[0], want)
		}
		if f[1] != src.String() || f[2] != dst.String() || f[3] != "128" {
			t.Errorf("packet %d: tshark found no inner echo request %v → %v: %q", i+1, src, dst, l)
		}
		if s.noESN && f[4] != "1" && f[4] != "True" {
			t.Errorf("packet %d (no ESN): ICV not good: %q", i+1, l)
		}
	}
}

// echoRequest is an ICMPv6 echo request from src to dst, checksum included.
func echoRequest(src, dst netip.Addr) []byte {
	p := make([]byte, 40+8)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], 8)
	p[6], p[7] = 58, 64
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	p[40] = 128
	binary.BigEndian.PutUint16(p[44:], 1) // identifier
	// Checksum over the pseudo-header (RFC 8200 §8.1) and the message.
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
	}
	add(p[8:40])
	sum += 8 + 58
	add(p[40:])
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(p[42:], ^uint16(sum))
	return p
}

// udp4 wraps an ESP packet in UDP (port to port) and IPv4, 192.0.2.1 to
// 198.51.100.2, with a zero UDP checksum (allowed in IPv4).
func udp4(esp []byte, port uint16) []byte {
	p := make([]byte, 28+len(esp))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 17
	copy(p[12:], []byte{192, 0, 2, 1, 198, 51, 100, 2})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], port)
	binary.BigEndian.PutUint16(p[22:], port)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(esp)))
	copy(p[28:], esp)
	return p
}

// pcapHeader is a classic pcap file header for raw IP packets
// (LINKTYPE_RAW, 101).
func pcapHeader() []byte {
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 65535)
	binary.LittleEndian.PutUint32(h[20:], 101)
	return h
}

func pcapRecord(w *bytes.Buffer, pkt []byte) {
	var r [16]byte
	binary.LittleEndian.PutUint32(r[8:], uint32(len(pkt)))
	binary.LittleEndian.PutUint32(r[12:], uint32(len(pkt)))
	w.Write(r[:])
	w.Write(pkt)
}
