package hostcert

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Trust is what one enrolled host trusts: its pinned user keys, the
// revocation list, and (on a signing host) the user key; it checks the
// other hosts and keeps why it refused any. Safe for concurrent use.
type Trust struct {
	domain string
	dir    string
	pins   []PublicKey
	key    UserKey // zero on a host that does not sign
	now    func() time.Time

	// mu guards following.
	mu      sync.Mutex
	own     *Cert
	list    *Revocations
	checked map[checkKey]checked
	refused map[string]*Refusal // by host name
	total   uint64
}

// Refusal is one host refused, and why.
type Refusal struct {
	Host   string    `json:"host"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	key    checkKey
}

// Status is the trust as `btmm-client status` shows it.
type Status struct {
	// Pins are the IDs (hex) of the pinned user keys.
	Pins []string `json:"pins"`
	// Signer is the ID of the user key this host signs with, if any.
	Signer string `json:"signer,omitempty"`
	// CertNotAfter is when this host's own certificate expires.
	CertNotAfter time.Time `json:"cert_not_after,omitzero"`
	// RevocationSerial and Revoked describe the revocation list in force.
	RevocationSerial uint64 `json:"revocation_serial,omitempty"`
	Revoked          int    `json:"revoked,omitempty"`
	// Refused lists the hosts refused now; RefusedTotal counts every
	// refusal of a host's records (each distinct set of records once).
	Refused      []Refusal `json:"refused"`
	RefusedTotal uint64    `json:"refused_total"`
}

type checkKey struct {
	host, cert string
	ula        netip.Addr
	static     [32]byte
}

type checked struct {
	cert Cert
	err  error // the error not depending on time or revocation
}

// ErrNotEnrolled is returned by Load for a state directory without a pin
// file.
var ErrNotEnrolled = errors.New("no user key pinned (btmm-client enroll)")

// Load reads the trust of the host whose state directory is dir, in the
// user's domain: the pin file (required: ErrNotEnrolled, wrapped, without
// one), the user key file and the kept revocation list if there are any.
func Load(dir, domain string) (*Trust, error) {
	pins, err := LoadPinFile(filepath.Join(dir, PinFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, PinFile), ErrNotEnrolled)
	}
	if err != nil {
		return nil, err
	}
	t := &Trust{domain: dns.CanonicalName(domain), dir: dir, pins: pins, now: time.Now,
		checked: make(map[checkKey]checked), refused: make(map[string]*Refusal)}
	k, err := LoadKeyFile(filepath.Join(dir, KeyFile))
	switch {
	case err == nil:
		if !slices.Contains(pins, k.Public()) {
			return nil, fmt.Errorf("hostcert: %s is not one of the keys pinned in %s", filepath.Join(dir, KeyFile), filepath.Join(dir, PinFile))
		}
		t.key = k
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(dir, RevokedFile)); err == nil {
		r, err := ParseRevocationsTXT(strings.Fields(string(b)))
		if err == nil {
			err = r.Verify(pins, t.domain)
		}
		if err != nil {
			return nil, fmt.Errorf("hostcert: %s: %w", filepath.Join(dir, RevokedFile), err)
		}
		t.list = &r
	}
	return t, nil
}

// New is a Trust of pins and key (zero: not signing) that keeps nothing
// on disk unless dir is set; for tests, and Load.
func New(domain, dir string, pins []PublicKey, key UserKey, now func() time.Time) *Trust {
	if now == nil {
		now = time.Now
	}
	return &Trust{domain: dns.CanonicalName(domain), dir: dir, pins: pins, key: key, now: now,
		checked: make(map[checkKey]checked), refused: make(map[string]*Refusal)}
}

// Key is the user key this host signs with; not Valid if it does not.
func (t *Trust) Key() UserKey { return t.key }

// Pins are the pinned keys.
func (t *Trust) Pins() []PublicKey { return slices.Clone(t.pins) }

// HostCert returns the certificate this host publishes for itself: one it
// signs (again once NeedsRenewal) on a signing host, else the one in
// CertFile, which must match the host.
func (t *Trust) HostCert(name string, ula netip.Addr, static [32]byte) (Cert, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if t.own != nil && !t.own.NeedsRenewal(now) && t.own.ULA == ula && t.own.Static == static {
		return *t.own, nil
	}
	var c Cert
	var err error
	if t.key.Valid() {
		c, err = Sign(t.key, name, ula, static, now.Add(-Skew), now.Add(Validity))
	} else {
		path := filepath.Join(t.dir, CertFile)
		var b []byte
		if b, err = os.ReadFile(path); err != nil {
			return Cert{}, fmt.Errorf("hostcert: this host holds no user key (%s) and has no certificate: %w; make one on a host that holds it with btmm-client certify", filepath.Join(t.dir, KeyFile), err)
		}
		if c, err = ParseString(strings.TrimSpace(string(b))); err == nil {
			err = c.Verify(t.pins, name, ula, static, now)
		}
		if err != nil {
			return Cert{}, fmt.Errorf("hostcert: %s: %w", path, err)
		}
	}
	if err != nil {
		return Cert{}, err
	}
	t.own = &c
	return c, nil
}

// NeedsRenewal reports whether this host's certificate should be signed
// (or replaced) again, or HostCert has not given one yet.
func (t *Trust) NeedsRenewal() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.own == nil || t.own.NeedsRenewal(t.now())
}

// Check decides whether the host name, whose records give ula, the static
// key and cert (the TXT record's "cert=" string, "" if none), is one of
// the user's hosts. A refusal is kept for Status until the host is
// accepted or Keep drops it.
func (t *Trust) Check(name string, ula netip.Addr, static [32]byte, cert string) error {
	k := checkKey{host: dns.CanonicalName(name), cert: cert, ula: ula, static: static}
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.checked[k]
	if !ok {
		c = t.verify(k)
		if len(t.checked) > 1024 {
			clear(t.checked)
		}
		t.checked[k] = c
	}
	err := c.err
	if err == nil {
		now := uint64(max(t.now().Unix(), 0))
		switch {
		case now < c.cert.NotBefore:
			err = fmt.Errorf("%w: until %v", ErrNotYetValid, time.Unix(int64(min(c.cert.NotBefore, 1<<62)), 0).UTC())
		case now > c.cert.NotAfter:
			err = fmt.Errorf("%w at %v", ErrExpired, time.Unix(int64(min(c.cert.NotAfter, 1<<62)), 0).UTC())
		case t.list != nil && t.list.Revoked(static):
			err = fmt.Errorf("%w (revocation list serial %d)", ErrRevoked, t.list.Serial)
		}
	}
	if err == nil {
		delete(t.refused, k.host)
		return nil
	}
	if r := t.refused[k.host]; r == nil || r.key != k || r.Reason != err.Error() {
		t.total++
		t.refused[k.host] = &Refusal{Host: k.host, Reason: err.Error(), Since: t.now(), key: k}
	}
	return err
}

// verify checks what does not depend on time or revocation; t.mu is held.
func (t *Trust) verify(k checkKey) checked {
	if k.cert == "" {
		return checked{err: fmt.Errorf("%w in its TXT record", ErrNoCert)}
	}
	c, err := ParseString(k.cert)
	if err != nil {
		return checked{err: err}
	}
	// Verify at a time inside the validity; Check compares with now.
	if err := c.Verify(t.pins, k.host, k.ula, k.static, time.Unix(int64(min(c.NotBefore, 1<<62)), 0)); err != nil {
		return checked{err: err}
	}
	return checked{cert: c}
}

// Keep drops the refusals of hosts not in hosts (they left the list).
func (t *Trust) Keep(hosts []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for h := range t.refused {
		if !slices.Contains(hosts, h) {
			delete(t.refused, h)
		}
	}
}

// SetRevocations takes the TXT records at RevocationName: the valid list
// with the highest serial, if higher than the one in force, replaces it
// and is kept in the state directory. It reports whether it did.
func (t *Trust) SetRevocations(txts [][]string) (bool, error) {
	var best *Revocations
	var errs []error
	for _, txt := range txts {
		r, err := ParseRevocationsTXT(txt)
		if err == nil {
			err = r.Verify(t.pins, t.domain)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if best == nil || r.Serial > best.Serial {
			best = &r
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if best == nil || t.list != nil && best.Serial <= t.list.Serial {
		return false, errors.Join(errs...)
	}
	t.list = best
	if t.dir != "" {
		if err := WriteFile(filepath.Join(t.dir, RevokedFile), []byte(strings.Join(best.TXT(), "\n")+"\n"), 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	return true, errors.Join(errs...)
}

// Revocations is the list in force, if any.
func (t *Trust) Revocations() (Revocations, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.list == nil {
		return Revocations{}, false
	}
	return *t.list, true
}

// Status returns the trust's state.
func (t *Trust) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Status{Refused: []Refusal{}, RefusedTotal: t.total}
	for _, p := range t.pins {
		s.Pins = append(s.Pins, fmt.Sprintf("%x", p.ID()))
	}
	if t.key.Valid() {
		s.Signer = fmt.Sprintf("%x", t.key.Public().ID())
	}
	if t.own != nil {
		s.CertNotAfter = time.Unix(int64(min(t.own.NotAfter, 1<<62)), 0).UTC()
	}
	if t.list != nil {
		s.RevocationSerial, s.Revoked = t.list.Serial, len(t.list.Keys)
	}
	for _, r := range t.refused {
		s.Refused = append(s.Refused, *r)
	}
	slices.SortFunc(s.Refused, func(a, b Refusal) int { return strings.Compare(a.Host, b.Host) })
	return s
}

// TunnelPSK is the tunnel's Noise pre-shared key between enrolled hosts:
// HKDF-SHA256 of no secret, salted with the user's domain. It is public
// on purpose: the hosts authenticate each other by their static keys,
// which the user key certifies (README, "Security"); the PSK only keeps
// the handshakes of two users' hosts apart, and keeps enrolled hosts from
// completing handshakes with hosts still on the server-held PSK.
func TunnelPSK(domain string) [32]byte {
	return pskOf(dns.CanonicalName(domain))
}
