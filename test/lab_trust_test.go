package test

import (
	"crypto/rand"
	"crypto/tls"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/daemon"
	"github.com/openbtmm/btmm/client/hostcert"
	"github.com/openbtmm/btmm/client/identity"
	"github.com/openbtmm/btmm/test/coredns"
	"github.com/openbtmm/btmm/test/lab"
)

// The lab tests of trust that does not rest on the server (package
// client/hostcert): hosts enrolled with alice's user key accept only
// hosts whose key that user key certified, whatever the server serves.

// alicePassword is alice's password in these tests: it gives her user key
// (and could give her TSIG key; the tests keep the fixed one).
const alicePassword = "correct horse battery staple, alice's"

// enrollClient runs btmm-client enroll for c with alice's password, as a
// user would on each of her hosts, and returns its output.
func enrollClient(t *testing.T, c *labClient) string {
	t.Helper()
	pw := filepath.Join(filepath.Dir(c.config), "password")
	if err := os.WriteFile(pw, []byte(alicePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "", coredns.Built(t, "btmm-client"), "enroll", "--config", c.config, "--password-file", pw)
	if err != nil {
		t.Fatalf("btmm-client enroll: %v\n%s", err, out)
	}
	return out
}

// startEnrolled starts alice's host on ns, enrolled, with runArgs added
// to run's arguments.
// startEnrolledPair starts two enrolled hosts of alice's, the desktop on
// hostA and the laptop on hostB, waits until each sees the other, and
// pings the laptop from the desktop through the tunnel.
func startEnrolledPair(t *testing.T, l *lab.Lab, dir string) (desktop, laptop *labClient, desktopULA, laptopULA netip.Addr) {
	t.Helper()
	desktop = startEnrolled(t, l, dir, "hostA", "desktop")
	laptop = startEnrolled(t, l, dir, "hostB", "laptop")
	laptop.waitPeer(desktop.name, netip.AddrPortFrom(l.WAN("routerA"), 4500), 10*time.Second)
	desktop.waitPeer(laptop.name, netip.AddrPortFrom(l.WAN("routerB"), 4500), 10*time.Second)
	desktopULA, laptopULA = laptop.peerULA(desktop.name), desktop.peerULA(laptop.name)
	pingWithin(t, l, desktop, laptopULA, 10*time.Second)
	return desktop, laptop, desktopULA, laptopULA
}

func startEnrolled(t *testing.T, l *lab.Lab, dir, ns, host string, runArgs ...string) *labClient {
	t.Helper()
	c := newUserClient(t, l, dir, ns, host, alice, runArgs...)
	enrollClient(t, c)
	c.start(l)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s:\n%s", c.name, c.out.String())
		}
	})
	return c
}

// startPinOnly starts alice's host on ns enrolled with her public user
// key alone (enroll --pin), with the certificate that signer makes for it
// (the certify command enroll prints, run on signer).
func startPinOnly(t *testing.T, l *lab.Lab, dir, ns, host string, signer *labClient, runArgs ...string) *labClient {
	t.Helper()
	c := newUserClient(t, l, dir, ns, host, alice, runArgs...)
	pins, err := hostcert.LoadPinFile(filepath.Join(filepath.Dir(signer.config), hostcert.PinFile))
	if err != nil {
		t.Fatal(err)
	}
	client := coredns.Built(t, "btmm-client")
	out, err := l.Exec(ns, client, "enroll", "--config", c.config, "--pin", pins[0].String()).CombinedOutput()
	if err != nil {
		t.Fatalf("enroll --pin: %v\n%s", err, out)
	}
	var certify []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "btmm-client" && f[1] == "certify" {
			certify = f[2:]
		}
	}
	if certify == nil {
		t.Fatalf("enroll --pin does not say how to certify the host:\n%s", out)
	}
	for i, a := range certify {
		if a == "FILE" {
			certify[i] = signer.config
		}
	}
	cert, err := exec.Command(client, append([]string{"certify"}, certify...)...).Output()
	if err != nil {
		t.Fatalf("certify %q: %v", certify, err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(c.config), hostcert.CertFile), cert, 0o644); err != nil {
		t.Fatal(err)
	}
	c.start(l)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s:\n%s", c.name, c.out.String())
		}
	})
	return c
}

// waitRefused waits until c refuses host for a reason containing why.
func (c *labClient) waitRefused(host, why string, within time.Duration) daemon.Status {
	c.t.Helper()
	return c.waitStatus("refusing "+host+" ("+why+")", within, func(st daemon.Status) bool {
		for _, r := range st.Trust.Refused {
			if r.Host == host && strings.Contains(r.Reason, why) {
				return true
			}
		}
		return false
	})
}

// checkNoPeer fails if c lists host as a peer or has a tunnel to ula.
func (c *labClient) checkNoPeer(host string, ula netip.Addr) {
	c.t.Helper()
	st, err := c.status()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, p := range st.Peers {
		if p.Host == host {
			c.t.Errorf("%s lists the refused %s as a peer: %+v", c.name, host, p)
		}
	}
	for _, tu := range st.Tunnels {
		if tu.ULA == ula {
			c.t.Errorf("%s has a tunnel to the refused %s: %+v", c.name, ula, tu)
		}
	}
}

// TestTrustForgedHost: alice's desktop and laptop, enrolled with her user
// key, reach each other as before. The server's operator, who holds
// alice's TSIG key and so the PSK as it was derived before user keys,
// runs a host of its own in her domain ("evil", a btmm-client with her
// TSIG key and no user key): its records are valid, TSIG-signed, and her
// hosts refuse it, say why in status, and give it no tunnel. The same for
// a forged certificate, and for the desktop's real one copied.
func TestTrustForgedHost(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: map[string]string{"hostA": "homeA", "hostB": "homeB", "hostC": "cafe"}})
	dir := t.TempDir()
	s := labServer(t, l, dir)
	desktop, laptop, desktopULA, _ := startEnrolledPair(t, l, dir)
	pingWithin(t, l, laptop, desktopULA, 5*time.Second)
	for _, c := range []*labClient{desktop, laptop} {
		st, _ := c.status()
		if st.Trust.Mode != "user-key" || len(st.Trust.Refused) != 0 || len(st.Trust.Signers) != 1 || st.Trust.CertNotAfter.Before(time.Now().Add(24*time.Hour)) {
			t.Fatalf("%s's trust: %+v", c.name, st.Trust)
		}
	}

	// The operator's host: alice's TSIG key, no user key.
	evil := startClient(t, l, dir, "hostC", "evil")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("evil:\n%s", evil.out.String())
		}
	})
	evilName := evil.name
	evil.waitPeer(desktop.name, netip.AddrPortFrom(l.WAN("routerA"), 4500), 10*time.Second)
	for _, c := range []*labClient{desktop, laptop} {
		c.waitRefused(evilName, "no certificate", 10*time.Second)
	}
	st, _ := evil.status()
	evilULA := netip.MustParseAddr(st.ULA)
	// It tries: its tunnel knows the desktop (it trusts the server), its
	// handshakes go unanswered.
	evil.waitTunnel(desktopULA, 5*time.Second)
	if out, err := l.Exec("hostC", "ping", "-6", "-n", "-c", "3", "-W", "1", desktopULA.String()).CombinedOutput(); err == nil {
		t.Fatalf("the forged host reaches the desktop through the tunnel:\n%s", out)
	}
	for _, c := range []*labClient{desktop, laptop} {
		c.checkNoPeer(evilName, evilULA)
	}
	if tu, _ := evil.tunnelTo(desktopULA); tu.HasSA {
		t.Fatalf("the forged host has an SA with the desktop: %+v", tu)
	}
	st, _ = desktop.status()
	if st.TunnelDrops.BadHandshake == 0 || st.Trust.RefusedTotal == 0 {
		t.Errorf("the desktop counted no refused handshake or host: %+v %+v", st.TunnelDrops, st.Trust)
	}
	human, err := run(t, "", coredns.Built(t, "btmm-client"), "status", "--socket", desktop.socket)
	if err != nil || !strings.Contains(human, "1 hosts refused now") || !strings.Contains(human, evilName) || !strings.Contains(human, "no certificate") {
		t.Fatalf("btmm-client status does not say why evil is refused: %v\n%s", err, human)
	}
	t.Logf("desktop's status:\n%s", human)

	// The operator publishes a certificate of its own making for its
	// host: alice's key ID, a signature of random octets; then the
	// desktop's real certificate, copied. Its client is stopped so as not
	// to publish over them; its records stay until their lease ends.
	evil.kill()
	evilKey, _ := identity.LoadOrCreateKey(filepath.Join(filepath.Dir(evil.config), "x25519.key"))
	pins, err := hostcert.LoadPinFile(filepath.Join(filepath.Dir(desktop.config), hostcert.PinFile))
	if err != nil {
		t.Fatal(err)
	}
	forged := hostcert.Cert{KeyID: pins[0].ID(), NotBefore: uint64(time.Now().Add(-time.Hour).Unix()), NotAfter: uint64(time.Now().Add(time.Hour).Unix()), ULA: evilULA, Static: evilKey.Public}
	rand.Read(forged.Sig[:])
	evilLabel := ""
	for _, p := range func() []string {
		r := labQuery(t, l, s, "_autotunnel._udp."+evilName, dns.TypeSRV)
		var out []string
		for _, rr := range r.Answer {
			out = append(out, rr.(*dns.SRV).Target)
		}
		return out
	}() {
		evilLabel = p
	}
	if evilLabel == "" {
		t.Fatal("the forged host's SRV is gone")
	}
	desktopCert := ""
	for _, rr := range labQuery(t, l, s, desktopLabel(t, l, s, desktop.name), dns.TypeTXT).Answer {
		for _, txt := range rr.(*dns.TXT).Txt {
			if strings.HasPrefix(txt, "cert=") {
				desktopCert = txt
			}
		}
	}
	if desktopCert == "" {
		t.Fatal("the desktop publishes no cert=")
	}
	for _, c := range []struct{ cert, why string }{
		{forged.String(), "bad signature"},
		{desktopCert, "bad signature"}, // signed for the desktop's name
	} {
		operatorUpdate(t, l, s, evilLabel, []string{"txtvers=1", "pk=" + evilKey.PublicBase64(), c.cert, "ciphers=aes256gcm,chacha20poly1305"})
		for _, d := range []*labClient{desktop, laptop} {
			d.waitRefused(evilName, c.why, 5*time.Second)
			d.checkNoPeer(evilName, evilULA)
		}
	}
	pingWithin(t, l, laptop, desktopULA, 5*time.Second)
}

// desktopLabel is the label (SRV target) of host.
func desktopLabel(t *testing.T, l *lab.Lab, s *coredns.Server, host string) string {
	t.Helper()
	r := labQuery(t, l, s, "_autotunnel._udp."+host, dns.TypeSRV)
	if len(r.Answer) == 0 {
		t.Fatalf("no SRV for %s", host)
	}
	return r.Answer[0].(*dns.SRV).Target
}

// operatorUpdate replaces the TXT record at label with txt, as anyone
// holding alice's TSIG key can: a TSIG-signed UPDATE over TLS from the
// server's own namespace.
func operatorUpdate(t *testing.T, l *lab.Lab, s *coredns.Server, label string, txt []string) {
	t.Helper()
	m := new(dns.Msg).SetUpdate(zone)
	m.RemoveRRset([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: label, Rrtype: dns.TypeTXT}}})
	m.Insert([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: label, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: txt}})
	m.SetTsig(alice.name, alice.miekgAlg(), 300, time.Now().Unix())
	var r *dns.Msg
	err := l.Go("server", func() error {
		c := &dns.Client{Net: "tcp-tls", TLSConfig: &tls.Config{InsecureSkipVerify: true}, Timeout: 5 * time.Second, TsigSecret: map[string]string{alice.name: alice.secret}}
		var err error
		r, _, err = c.Exchange(m, netip.AddrPortFrom(l.Addr("server"), 853).String())
		return err
	})
	if err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("the operator's UPDATE: %v %v", err, r)
	}
}

// TestTrustRevoke: three of alice's hosts, enrolled: the desktop and the
// laptop hold her user key, the NAS only its public half, and a
// certificate the desktop made for it (btmm-client certify). The desktop
// revokes the laptop (btmm-client revoke laptop): the signed list reaches
// the other two by push (DNS Push for the desktop, an LLQ event for the
// NAS), and both refuse the laptop within two seconds, drop its tunnel,
// and still refuse it after a restart (the list is kept), while the
// desktop and the NAS still reach each other.
func TestTrustRevoke(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: map[string]string{"hostA": "homeA", "hostB": "homeB", "hostC": "cafe"}})
	dir := t.TempDir()
	labServer(t, l, dir)
	desktop := startEnrolled(t, l, dir, "hostA", "desktop")
	laptop := startEnrolled(t, l, dir, "hostB", "laptop")
	nas := startPinOnly(t, l, dir, "hostC", "nas", desktop, "--set", "push=llq")
	nasAt := netip.AddrPortFrom(l.Addr("hostC"), 4500)
	laptopAt := netip.AddrPortFrom(l.WAN("routerB"), 4500)
	desktop.waitPeer(nas.name, nasAt, 10*time.Second)
	desktop.waitPeer(laptop.name, laptopAt, 10*time.Second)
	nas.waitPeer(laptop.name, laptopAt, 10*time.Second)
	laptopULA, nasULA, desktopULA := nas.peerULA(laptop.name), desktop.peerULA(nas.name), nas.peerULA(desktop.name)
	pingWithin(t, l, nas, laptopULA, 10*time.Second)
	pingWithin(t, l, desktop, laptopULA, 10*time.Second)
	if st, _ := nas.status(); len(st.Trust.Signers) != 0 || len(st.Trust.Pins) != 1 || st.Trust.CertNotAfter.Before(time.Now().Add(300*24*time.Hour)) {
		t.Errorf("the NAS's trust: %+v", st.Trust)
	}

	nas.waitStatus("watching by LLQ", 10*time.Second, func(st daemon.Status) bool { return st.Watch.Mode == "llq" })
	out, err := l.Exec("hostA", coredns.Built(t, "btmm-client"), "revoke", "--config", desktop.config, "laptop").CombinedOutput()
	revoked := time.Now()
	if err != nil || !strings.Contains(string(out), "1 keys revoked") {
		t.Fatalf("btmm-client revoke laptop: %v\n%s", err, out)
	}
	t.Logf("btmm-client revoke laptop:\n%s", out)
	for _, c := range []*labClient{nas, desktop} {
		c.waitRefused(laptop.name, "revoked", 2*time.Second)
		t.Logf("%s refuses the laptop %v after the revocation was published", c.name, time.Since(revoked).Round(time.Millisecond))
		c.checkNoPeer(laptop.name, laptopULA)
		if st, _ := c.status(); st.Trust.Revoked != 1 || st.Trust.RevocationSerial == 0 {
			t.Errorf("%s's trust: %+v", c.name, st.Trust)
		}
	}
	if out, err := l.Exec("hostB", "ping", "-6", "-n", "-c", "2", "-W", "1", nasULA.String()).CombinedOutput(); err == nil {
		t.Fatalf("the revoked laptop still reaches the NAS:\n%s", out)
	}
	pingWithin(t, l, nas, desktopULA, 5*time.Second)

	// The NAS restarts: it still refuses the laptop, from the list it
	// kept, and publishes the list itself.
	nas.stop()
	nas.start(l)
	nas.waitPeer(desktop.name, netip.AddrPortFrom(l.WAN("routerA"), 4500), 10*time.Second)
	nas.waitStatus("watching by LLQ", 10*time.Second, func(st daemon.Status) bool { return st.Watch.Mode == "llq" })
	nas.waitRefused(laptop.name, "revoked", 10*time.Second)
	pingWithin(t, l, nas, desktopULA, 10*time.Second)
	st, _ := nas.status()
	if !slicesContainsPrefix(st.Publish.Records, "_btmm-revoked.alice.members.example.com.") {
		t.Errorf("the NAS does not publish the revocation list: %q", st.Publish.Records)
	}
}

func slicesContainsPrefix(ss []string, prefix string) bool {
	for _, s := range ss {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// TestTrustMigrate: alice's two hosts were set up before user keys and
// trust the server. Each is moved over with one command (btmm-client
// enroll with her password) and a restart: after the first, the migrated
// desktop refuses the laptop, which has no certificate yet; after the
// second, they reach each other again, each accepting the other by its
// certificate.
func TestTrustMigrate(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	dir := t.TempDir()
	labServer(t, l, dir)
	desktop, laptop := startPeers(t, l, dir, "desktop", nil, "laptop", nil)
	laptopULA, desktopULA := desktop.peerULA(laptop.name), laptop.peerULA(desktop.name)
	pingWithin(t, l, desktop, laptopULA, 10*time.Second)
	for _, c := range []*labClient{desktop, laptop} {
		if st, _ := c.status(); st.Trust.Mode != "server" {
			t.Fatalf("%s before: trust %+v", c.name, st.Trust)
		}
	}
	if !strings.Contains(desktop.out.String(), "TRUST: no user key pinned") {
		t.Errorf("a host not enrolled does not say that it trusts the server:\n%s", desktop.out.String())
	}

	migrate := func(c *labClient) {
		t.Helper()
		c.stop()
		out := enrollClient(t, c)
		t.Logf("%s: btmm-client enroll:\n%s", c.name, out)
		c.start(l)
	}
	migrate(desktop)
	desktop.waitRefused(laptop.name, "no certificate", 10*time.Second)
	desktop.checkNoPeer(laptop.name, laptopULA)

	migrate(laptop)
	start := time.Now()
	desktop.waitPeer(laptop.name, netip.AddrPortFrom(l.WAN("routerB"), 4500), 10*time.Second)
	laptop.waitPeer(desktop.name, netip.AddrPortFrom(l.WAN("routerA"), 4500), 10*time.Second)
	pingWithin(t, l, desktop, laptopULA, 10*time.Second)
	pingWithin(t, l, laptop, desktopULA, 5*time.Second)
	t.Logf("both migrated: tunnel up %v after the laptop's restart", time.Since(start).Round(time.Millisecond))
	for _, c := range []*labClient{desktop, laptop} {
		st, _ := c.status()
		if st.Trust.Mode != "user-key" || len(st.Trust.Refused) != 0 || len(st.Peers) != 1 {
			t.Fatalf("%s after: trust %+v, peers %+v", c.name, st.Trust, st.Peers)
		}
	}
}

// TestTrustRotate: alice replaces her user key, host by host, without the
// server's help and without losing a tunnel. First each host takes the new
// key beside the old (enroll --add: it pins both and publishes a
// certificate under each), then each drops the old one. At every step the
// desktop and the laptop reach each other. A host revoked before under the
// old key stays revoked (the list is signed again with the new key), and
// afterwards a host still on the old key alone is refused.
func TestTrustRotate(t *testing.T) {
	l := lab.Start(t, lab.Options{Hosts: map[string]string{"hostA": "homeA", "hostB": "homeB", "hostC": "cafe"}})
	dir := t.TempDir()
	labServer(t, l, dir)
	desktop, laptop, desktopULA, laptopULA := startEnrolledPair(t, l, dir)

	client := coredns.Built(t, "btmm-client")
	retired := startEnrolled(t, l, dir, "hostC", "retired")
	desktop.waitPeer(retired.name, netip.AddrPortFrom(l.Addr("hostC"), 4500), 10*time.Second)
	if out, err := l.Exec("hostA", client, "revoke", "--config", desktop.config, "retired").CombinedOutput(); err != nil {
		t.Fatalf("btmm-client revoke retired: %v\n%s", err, out)
	}
	for _, c := range []*labClient{desktop, laptop} {
		c.waitRefused(retired.name, "revoked", 5*time.Second)
	}
	oldSerial := func() uint64 { st, _ := desktop.status(); return st.Trust.RevocationSerial }()

	newKey := filepath.Join(dir, "alice-new.userkey")
	if out, err := run(t, "", client, "keygen", "--user", "alice", "--zone", "members.example.com", "--user-key", newKey); err != nil {
		t.Fatalf("keygen --user-key: %v\n%s", err, out)
	}
	step := func(c *labClient, what string, args ...string) {
		t.Helper()
		c.stop()
		out, err := run(t, "", client, append([]string{"enroll", "--config", c.config, "--user-key", newKey}, args...)...)
		if err != nil {
			t.Fatalf("%s: enroll %v: %v\n%s", c.name, args, err, out)
		}
		c.start(l)
		start := time.Now()
		pingWithin(t, l, desktop, laptopULA, 10*time.Second)
		pingWithin(t, l, laptop, desktopULA, 10*time.Second)
		st, _ := c.status()
		t.Logf("%s %s: pins %v, signs with %v; tunnel back %v after its restart", c.name, what, st.Trust.Pins, st.Trust.Signers, time.Since(start).Round(time.Millisecond))
	}
	step(desktop, "takes the new key beside the old", "--add")
	if st, _ := desktop.status(); len(st.Trust.Pins) != 2 || len(st.Trust.Signers) != 2 {
		t.Fatalf("the desktop during the overlap: %+v", st.Trust)
	}
	step(laptop, "takes the new key beside the old", "--add")
	step(desktop, "drops the old key")
	step(laptop, "drops the old key")
	for _, c := range []*labClient{desktop, laptop} {
		st, _ := c.status()
		if len(st.Trust.Pins) != 1 || len(st.Trust.Signers) != 1 || st.Trust.Pins[0] != st.Trust.Signers[0] {
			t.Fatalf("%s after the rotation: %+v", c.name, st.Trust)
		}
		// Refused now for its old key alone; the list still holds it.
		c.waitRefused(retired.name, "not pinned", 5*time.Second)
		if st.Trust.Revoked != 1 || st.Trust.RevocationSerial <= oldSerial {
			t.Errorf("%s's revocation list after the rotation: %+v (serial %d before)", c.name, st.Trust, oldSerial)
		}
	}
	retired.stop()

	// A host enrolled with the old key only (the password's) is refused.
	stale := startEnrolled(t, l, dir, "hostC", "stale")
	for _, c := range []*labClient{desktop, laptop} {
		c.waitRefused(stale.name, "not pinned", 10*time.Second)
	}
}
