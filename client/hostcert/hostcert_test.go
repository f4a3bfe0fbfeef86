package hostcert

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	domain = "alice.members.example.com."
	host   = "desktop.alice.members.example.com."
)

var (
	ula    = netip.MustParseAddr("fd00:1122:3344:5566:7788:99aa:bbcc:ddee")
	static = [32]byte{0: 0x5a, 31: 0xa5}
	t0     = time.Unix(1_800_000_000, 0)
)

func seedKey(b byte) UserKey {
	var s [32]byte
	for i := range s {
		s[i] = b
	}
	return UserKeyFromSeed(s)
}

// TestCertOctets pins the layout of the package comment, octet by octet.
func TestCertOctets(t *testing.T) {
	k := seedKey(1)
	c, err := Sign(k, "Desktop.Alice.Members.Example.Com", ula, static, t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Marshal()
	if len(b) != 137 || CertSize != 137 {
		t.Fatalf("%d octets", len(b))
	}
	id := k.Public().ID()
	want := "01" + hex.EncodeToString(id[:]) +
		"000000006b49d200" + // 1_800_000_000
		"000000006b49e010" + // + 3600
		"fd00112233445566778899aabbccddee" +
		"5a000000000000000000000000000000000000000000000000000000000000a5"
	if got := hex.EncodeToString(b[:73]); got != want {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
	// The signature covers the context, the body and the lowercase name
	// in wire format.
	msg := append([]byte("btmm host cert v1\x00"), b[:73]...)
	msg = append(msg, "\x07desktop\x05alice\x07members\x07example\x03com\x00"...)
	pub := k.Public()
	if !ed25519.Verify(pub[:], msg, b[73:]) {
		t.Fatal("the signature is not over context ‖ body ‖ wire name")
	}
	s := c.String()
	if !strings.HasPrefix(s, "cert=") || len(s) != 189 {
		t.Fatalf("TXT string %d octets: %s", len(s), s)
	}
	back, err := ParseString(s)
	if err != nil || back != c {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	if err := back.Verify([]PublicKey{seedKey(9).Public(), pub}, host, ula, static, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

func TestCertVerify(t *testing.T) {
	k := seedKey(1)
	pins := []PublicKey{k.Public()}
	c, _ := Sign(k, host, ula, static, t0, t0.Add(time.Hour))
	forged := c
	forged.Sig[0] ^= 1
	other, _ := Sign(seedKey(2), host, ula, static, t0, t0.Add(time.Hour))
	for _, tc := range []struct {
		name   string
		c      Cert
		host   string
		ula    netip.Addr
		static [32]byte
		at     time.Time
		want   error
	}{
		{"good", c, host, ula, static, t0, nil},
		{"forged signature", forged, host, ula, static, t0, ErrBadSignature},
		{"other user key", other, host, ula, static, t0, ErrUnknownKey},
		{"another name", c, "evil." + domain, ula, static, t0, ErrBadSignature},
		{"another ULA", c, host, netip.MustParseAddr("fd00::1"), static, t0, ErrMismatch},
		{"another key", c, host, ula, [32]byte{1}, t0, ErrMismatch},
		{"expired", c, host, ula, static, t0.Add(time.Hour + time.Second), ErrExpired},
		{"early", c, host, ula, static, t0.Add(-time.Second), ErrNotYetValid},
	} {
		err := tc.c.Verify(pins, tc.host, tc.ula, tc.static, tc.at)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	c, _ := Sign(seedKey(1), host, ula, static, t0, t0.Add(time.Hour))
	b := c.Marshal()
	bad := bytes.Clone(b)
	bad[0] = 2
	back := bytes.Clone(b)
	copy(back[9:17], b[17:25])
	copy(back[17:25], b[9:17])
	for _, in := range [][]byte{nil, b[:136], append(bytes.Clone(b), 0), bad, back} {
		if _, err := Parse(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%x): %v", in, err)
		}
	}
	if _, err := ParseString("cert=!!"); !errors.Is(err, ErrMalformed) {
		t.Error(err)
	}
}

// TestRevocationOctets pins the list's layout.
func TestRevocationOctets(t *testing.T) {
	k := seedKey(1)
	a, b := [32]byte{0: 2}, [32]byte{0: 1}
	r, err := SignRevocations(k, "ALICE.members.example.com", 0x0102030405060708, [][32]byte{a, b, a})
	if err != nil {
		t.Fatal(err)
	}
	m := r.Marshal()
	id := k.Public().ID()
	want := "01" + hex.EncodeToString(id[:]) + "0102030405060708" + "0002" +
		"01" + strings.Repeat("00", 31) + "02" + strings.Repeat("00", 31)
	if got := hex.EncodeToString(m[:19+64]); got != want {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
	msg := append([]byte("btmm revocations v1\x00"), m[:83]...)
	msg = append(msg, "\x05alice\x07members\x07example\x03com\x00"...)
	pub := k.Public()
	if !ed25519.Verify(pub[:], msg, m[83:]) {
		t.Fatal("the signature is not over context ‖ body ‖ wire domain")
	}
	back, err := ParseRevocationsTXT(r.TXT())
	if err != nil || back.Serial != r.Serial || len(back.Keys) != 2 {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	if err := back.Verify([]PublicKey{pub}, domain); err != nil {
		t.Fatal(err)
	}
	if err := back.Verify([]PublicKey{pub}, "bob.members.example.com."); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("another domain: %v", err)
	}
	if !back.Revoked(a) || !back.Revoked(b) || back.Revoked(static) {
		t.Fatal("Revoked")
	}
	// A long list spans many TXT strings, each within 255 octets.
	var many [][32]byte
	for i := range 100 {
		many = append(many, [32]byte{byte(i), 7})
	}
	r, _ = SignRevocations(k, domain, 1, many)
	txt := r.TXT()
	for _, s := range txt {
		if len(s) > 255 {
			t.Fatalf("a %d-octet TXT string", len(s))
		}
	}
	if back, err := ParseRevocationsTXT(txt); err != nil || len(back.Keys) != 100 {
		t.Fatalf("%d strings: %v", len(txt), err)
	}
}

func TestDeriveUserKey(t *testing.T) {
	a, err := DeriveUserKey([]byte("correct horse battery staple"), "Alice.Members.Example.Com")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := DeriveUserKey([]byte("correct horse battery staple"), domain)
	c, _ := DeriveUserKey([]byte("correct horse battery staple"), "bob.members.example.com.")
	if a.Public() != b.Public() || a.Public() == c.Public() {
		t.Fatal("the derivation is not per domain, or not deterministic")
	}
	if s, _ := KeySalt(domain); s != "btmm-userkey-v1:alice.members.example.com." {
		t.Fatal(s)
	}
	if _, err := DeriveUserKey(nil, domain); err == nil {
		t.Fatal("an empty password")
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	k, err := NewUserKey()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(k.String(), "seed") || !strings.Contains(string(FormatKeyFile(k)), k.Public().String()) {
		t.Fatal(k.String())
	}
	kp := filepath.Join(dir, KeyFile)
	if err := WriteFile(kp, FormatKeyFile(k), 0o600); err != nil {
		t.Fatal(err)
	}
	back, err := LoadKeyFile(kp)
	if err != nil || len(back) != 1 || back[0].Public() != k.Public() {
		t.Fatalf("%v %v", back, err)
	}
	two := seedKey(4)
	if back, err := ParseKeyFile(FormatKeyFile(two, k)); err != nil || len(back) != 2 || back[0].Public() != two.Public() || back[1].Public() != k.Public() {
		t.Fatalf("two keys: %v %v", back, err)
	}
	os.Chmod(kp, 0o644)
	if _, err := LoadKeyFile(kp); !errors.Is(err, ErrInsecureKeyFile) {
		t.Fatal(err)
	}
	pp := filepath.Join(dir, PinFile)
	other := seedKey(3).Public()
	WriteFile(pp, FormatPinFile(k.Public(), other), 0o644)
	pins, err := LoadPinFile(pp)
	if err != nil || len(pins) != 2 || pins[0] != k.Public() || pins[1] != other {
		t.Fatalf("%v %v", pins, err)
	}
	for _, bad := range []string{"", "# only a comment\n", "AAAA\n", "# 33 octets\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"} {
		if _, err := ParseKeyFile([]byte(bad)); err == nil {
			t.Errorf("ParseKeyFile(%q)", bad)
		}
	}
	if _, err := ParsePinFile([]byte("# none\n")); err == nil {
		t.Error("an empty pin file")
	}
}

func TestTrust(t *testing.T) {
	dir := t.TempDir()
	k := seedKey(1)
	WriteFile(filepath.Join(dir, PinFile), FormatPinFile(k.Public()), 0o644)
	if _, err := Load(t.TempDir(), domain); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("no pin: %v", err)
	}
	tr, err := Load(dir, domain)
	if err != nil || len(tr.Keys()) != 0 {
		t.Fatalf("pin only: %v", err)
	}
	if _, err := tr.HostCerts(host, ula, static); err == nil {
		t.Fatal("a host with no key and no certificate made one")
	}
	if tr.NeedsRenewal() {
		t.Fatal("a host with no key and no certificate file has something to renew")
	}
	given, _ := Sign(seedKey(1), host, ula, static, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	WriteFile(filepath.Join(dir, CertFile), []byte(given.String()+"\n"), 0o644)
	if !tr.NeedsRenewal() {
		t.Fatal("host.cert appeared: nothing to renew")
	}
	if c, err := tr.HostCerts(host, ula, static); err != nil || len(c) != 1 || c[0] != given {
		t.Fatalf("from host.cert: %v %v", c, err)
	}
	if tr.NeedsRenewal() {
		t.Fatal("host.cert read: still something to renew")
	}
	os.Remove(filepath.Join(dir, CertFile))
	WriteFile(filepath.Join(dir, KeyFile), FormatKeyFile(k), 0o600)
	tr, err = Load(dir, domain)
	if err != nil || len(tr.Keys()) != 1 {
		t.Fatal(err)
	}
	now := t0
	tr.now = func() time.Time { return now }
	owns, err := tr.HostCerts(host, ula, static)
	if err != nil || len(owns) != 1 {
		t.Fatal(err)
	}
	own := owns[0]
	if tr.NeedsRenewal() {
		t.Fatal("a new certificate needs renewal")
	}

	laptop := "laptop." + domain
	lk := [32]byte{9}
	lc, _ := Sign(k, laptop, ula, lk, now.Add(-time.Hour), now.Add(time.Hour))
	if err := tr.Check(laptop, ula, lk, []string{lc.String()}); err != nil {
		t.Fatal(err)
	}
	// A forged host: no certificate, then a forged one; counted once each.
	evil := "evil." + domain
	for range 3 {
		if err := tr.Check(evil, ula, static, nil); !errors.Is(err, ErrNoCert) {
			t.Fatal(err)
		}
	}
	if err := tr.Check(evil, ula, static, []string{own.String()}); !errors.Is(err, ErrBadSignature) {
		t.Fatal(err)
	}
	st := tr.Status()
	if st.RefusedTotal != 2 || len(st.Refused) != 1 || st.Refused[0].Host != evil || !strings.Contains(st.Refused[0].Reason, "bad signature") {
		t.Fatalf("%+v", st)
	}
	tr.Keep([]string{laptop})
	if st := tr.Status(); len(st.Refused) != 0 || st.RefusedTotal != 2 {
		t.Fatalf("%+v", st)
	}

	// Revoked: the laptop's key, by a list; an older list does not undo it.
	r1, _ := SignRevocations(k, domain, 1, nil)
	r2, _ := SignRevocations(k, domain, 2, [][32]byte{lk})
	forgedList := r2
	forgedList.Serial = 3
	if ok, err := tr.SetRevocations([][]string{r1.TXT(), r2.TXT(), forgedList.TXT()}); !ok || err == nil {
		t.Fatalf("%v %v", ok, err)
	}
	if err := tr.Check(laptop, ula, lk, []string{lc.String()}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked: %v", err)
	}
	if ok, _ := tr.SetRevocations([][]string{r1.TXT()}); ok {
		t.Fatal("an older list replaced a newer")
	}
	// Kept across a restart.
	tr2, err := Load(dir, domain)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := tr2.Revocations(); !ok || r.Serial != 2 {
		t.Fatalf("%+v", r)
	}
	// Time: the laptop's certificate expires.
	now = now.Add(2 * time.Hour)
	tr2.now = tr.now
	if err := tr2.Check(laptop, ula, lk, []string{lc.String()}); !errors.Is(err, ErrExpired) && !errors.Is(err, ErrRevoked) {
		t.Fatal(err)
	}
	now = t0.Add(Validity / 2)
	if !tr.NeedsRenewal() {
		t.Fatal("half the validity gone")
	}
	if again, _ := tr.HostCerts(host, ula, static); again[0].NotAfter <= own.NotAfter {
		t.Fatal("not renewed")
	}
}

func TestTunnelPSK(t *testing.T) {
	if TunnelPSK("Alice.members.example.com") != TunnelPSK(domain) || TunnelPSK(domain) == TunnelPSK("bob.members.example.com.") {
		t.Fatal("the PSK is not per domain")
	}
}

// While the user key is replaced: a host holding both keys publishes a
// certificate under each, and a peer pinning either accepts it; a peer
// pinning only the new key refuses a certificate under the old one.
func TestRotation(t *testing.T) {
	old, nu := seedKey(1), seedKey(2)
	dir := t.TempDir()
	WriteFile(filepath.Join(dir, PinFile), FormatPinFile(nu.Public(), old.Public()), 0o644)
	WriteFile(filepath.Join(dir, KeyFile), FormatKeyFile(nu, old), 0o600)
	both, err := Load(dir, domain)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := both.HostCerts(host, ula, static)
	if err != nil || len(certs) != 2 || certs[0].KeyID != nu.Public().ID() || certs[1].KeyID != old.Public().ID() {
		t.Fatalf("%+v %v", certs, err)
	}
	strs := []string{certs[0].String(), certs[1].String()}
	if st := both.Status(); len(st.Signers) != 2 || len(st.Pins) != 2 {
		t.Fatalf("%+v", st)
	}
	oldOnly := newTrust(t, []PublicKey{old.Public()})
	newOnly := newTrust(t, []PublicKey{nu.Public()})
	for _, tr := range []*Trust{oldOnly, newOnly, both} {
		if err := tr.Check(host, ula, static, strs); err != nil {
			t.Errorf("pins %v: %v", tr.Status().Pins, err)
		}
	}
	if err := newOnly.Check(host, ula, static, strs[1:]); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("the old key's certificate after the rotation: %v", err)
	}
	// Of a forged and an unknown certificate, the forged one is the reason.
	forged := certs[0]
	forged.Sig[5] ^= 1
	if err := newOnly.Check(host, ula, static, []string{strs[1], forged.String()}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("%v", err)
	}
	// A key file key that is not pinned is refused.
	WriteFile(filepath.Join(dir, PinFile), FormatPinFile(nu.Public()), 0o644)
	if _, err := Load(dir, domain); err == nil {
		t.Error("a held key not pinned")
	}
}

func newTrust(t *testing.T, pins []PublicKey) *Trust {
	t.Helper()
	dir := t.TempDir()
	WriteFile(filepath.Join(dir, PinFile), FormatPinFile(pins...), 0o644)
	tr, err := Load(dir, domain)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// When the user key is dropped, the kept revocation list is signed again
// by the new one (Resign); a kept list that no pinned key signed is
// ignored, with a warning, rather than stop the host. A full list (1,024
// keys) is kept and read back.
func TestResignAndKeptList(t *testing.T) {
	old, nu := seedKey(1), seedKey(2)
	dir := t.TempDir()
	WriteFile(filepath.Join(dir, PinFile), FormatPinFile(old.Public()), 0o644)
	tr, err := Load(dir, domain)
	if err != nil {
		t.Fatal(err)
	}
	var many [][32]byte
	for i := range MaxRevoked {
		many = append(many, [32]byte{byte(i), byte(i >> 8), 1})
	}
	r, _ := SignRevocations(old, domain, 10, many)
	if ok, err := tr.SetRevocations([][]string{r.TXT()}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if back, err := Load(dir, domain); err != nil || back.Warning != "" {
		t.Fatalf("%v %q", err, back.Warning)
	} else if l, ok := back.Revocations(); !ok || len(l.Keys) != MaxRevoked {
		t.Fatalf("the kept list: %d keys", len(l.Keys))
	}

	// The old key dropped without signing the list again: ignored.
	WriteFile(filepath.Join(dir, PinFile), FormatPinFile(nu.Public()), 0o644)
	back, err := Load(dir, domain)
	if err != nil || back.Warning == "" {
		t.Fatalf("%v %q", err, back.Warning)
	}
	if _, ok := back.Revocations(); ok {
		t.Fatal("a list under an unpinned key is in force")
	}
	// Signed again, as enroll does.
	ok, err := Resign(dir, domain, []PublicKey{old.Public()}, []PublicKey{nu.Public()}, nu)
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	back, err = Load(dir, domain)
	if err != nil || back.Warning != "" {
		t.Fatalf("%v %q", err, back.Warning)
	}
	if l, ok := back.Revocations(); !ok || l.Serial <= 10 || len(l.Keys) != MaxRevoked || l.KeyID != nu.Public().ID() {
		t.Fatalf("after Resign: %+v", l.Serial)
	}
	// Nothing to do when the list is valid under the new pins already.
	if ok, _ := Resign(dir, domain, []PublicKey{nu.Public()}, []PublicKey{nu.Public()}, nu); ok {
		t.Fatal("signed again for nothing")
	}
}
