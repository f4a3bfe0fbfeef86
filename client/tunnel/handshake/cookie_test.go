package handshake

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestCookieMAC(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	cm, err := NewCookieMaker(nil, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddrPort("192.0.2.1:4500")
	a6 := netip.MustParseAddrPort("[::ffff:192.0.2.1]:4500")
	b := netip.MustParseAddrPort("192.0.2.1:4501")
	c := netip.MustParseAddrPort("[2001:db8::1]:4500")
	ca := cm.Cookie(a)
	if ca != cm.Cookie(a) {
		t.Error("cookie not stable within a rotation")
	}
	if ca != cm.Cookie(a6) {
		t.Error("IPv4 and IPv4-mapped sources differ")
	}
	if ca == cm.Cookie(b) || ca == cm.Cookie(c) {
		t.Error("different sources share a cookie")
	}
	if !cm.Valid(a, ca) || cm.Valid(b, ca) {
		t.Error("Valid")
	}
	other, _ := NewCookieMaker(nil, func() time.Time { return now })
	if other.Cookie(a) == ca {
		t.Error("two secrets give the same cookie")
	}

	now = now.Add(CookieRotation)
	if cm.Cookie(a) == ca {
		t.Error("secret did not rotate")
	}
	if !cm.Valid(a, ca) {
		t.Error("previous cookie refused right after rotation")
	}
	now = now.Add(CookieRotation)
	if cm.Valid(a, ca) {
		t.Error("cookie two rotations old accepted")
	}
}

func TestCookieFlow(t *testing.T) {
	p := newPair(t)
	src := netip.MustParseAddrPort("198.51.100.7:61000")
	msg, st, err := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	// Not under load: no cookie needed.
	if _, _, err := p.resp.RespondFrom(msg, src, false, ulaR, 0x2000); err != nil {
		t.Fatal(err)
	}

	msg, st, _ = Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	creply, _, err := p.resp.RespondFrom(msg, src, true, ulaR, 0x2000)
	if !errors.Is(err, ErrCookieRequired) || len(creply) != CookieReplyLen || creply[0] != TypeCookieReply {
		t.Fatalf("under load: %v, %d octets", err, len(creply))
	}
	// A cookie reply for another initiation, or tampered, is refused.
	_, st2, _ := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	if err := st2.ConsumeCookie(creply); err == nil {
		t.Error("cookie reply for another initiation accepted")
	}
	bad := bytes.Clone(creply)
	bad[len(bad)-1] ^= 1
	if err := st.ConsumeCookie(bad); !errors.Is(err, ErrAuth) {
		t.Errorf("tampered cookie reply: %v", err)
	}
	if err := st.ConsumeCookie(creply); err != nil {
		t.Fatal(err)
	}
	msg2, st3, err := st.Retry()
	if err != nil {
		t.Fatal(err)
	}
	// From another source the cookie is worthless.
	if _, _, err := p.resp.RespondFrom(msg2, netip.MustParseAddrPort("198.51.100.8:61000"), true, ulaR, 0x2000); !errors.Is(err, ErrCookieRequired) {
		t.Errorf("cookie from another source: %v", err)
	}
	reply, rr, err := p.resp.RespondFrom(msg2, src, true, ulaR, 0x2000)
	if err != nil {
		t.Fatalf("with cookie: %v", err)
	}
	ri, err := st3.Finish(reply)
	if err != nil {
		t.Fatal(err)
	}
	if ri.Send != rr.Recv || ri.Recv != rr.Send {
		t.Fatal("keys differ")
	}
}
