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
	keys   []UserKey // none on a host that does not sign
	now    func() time.Time
	// Logf, if set before the Trust is shared, is told of each new
	// refusal.
	Logf func(string, ...any)
	// Warning, set by Load, says what it ignored.
	Warning string

	// mu guards following.
	mu      sync.Mutex
	own     []Cert // one per key in keys, or the one in CertFile
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
	// Signers are the IDs of the user keys this host signs with, if any.
	Signers []string `json:"signers,omitempty"`
	// CertNotAfter is when this host's own (first) certificate expires.
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
	host, certs string // certs joined by " "
	ula         netip.Addr
	static      [32]byte
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
	keys, err := LoadKeyFile(filepath.Join(dir, KeyFile))
	switch {
	case err == nil:
		for _, k := range keys {
			if !slices.Contains(pins, k.Public()) {
				return nil, fmt.Errorf("hostcert: key %x in %s is not one of the keys pinned in %s", k.Public().ID(), filepath.Join(dir, KeyFile), filepath.Join(dir, PinFile))
			}
		}
		t.keys = keys
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	r, err := loadRevocations(dir)
	if err == nil {
		err = r.Verify(pins, t.domain)
	}
	switch {
	case err == nil:
		t.list = &r
	case !errors.Is(err, fs.ErrNotExist):
		// Signed by a key no longer pinned (and not signed again when it
		// was dropped: a host that holds no user key), or damaged: the
		// list in the user's domain takes its place when it comes.
		t.Warning = fmt.Sprintf("the kept revocation list %s is not valid under the pinned keys (%v): ignored until a valid one is published", filepath.Join(dir, RevokedFile), err)
	}
	return t, nil
}

// Keys are the user keys this host signs with, the one in use first;
// none if it does not sign.
func (t *Trust) Keys() []UserKey { return slices.Clone(t.keys) }

// Pins are the pinned keys.
func (t *Trust) Pins() []PublicKey { return slices.Clone(t.pins) }

// HostCerts returns the certificates this host publishes for itself: on
// a signing host one per key it holds (two while the user key is being
// replaced, so that hosts pinning either accept it), signed again once
// the first NeedsRenewal; else the one in CertFile, which must match the
// host.
func (t *Trust) HostCerts(name string, ula netip.Addr, static [32]byte) ([]Cert, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if len(t.own) > 0 && !t.own[0].NeedsRenewal(now) && t.own[0].ULA == ula && t.own[0].Static == static {
		return slices.Clone(t.own), nil
	}
	var certs []Cert
	for _, k := range t.keys {
		c, err := Sign(k, name, ula, static, now.Add(-Skew), now.Add(Validity))
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(t.keys) == 0 {
		path := filepath.Join(t.dir, CertFile)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("hostcert: this host holds no user key (%s) and has no certificate: %w; make one on a host that holds it with btmm-client certify", filepath.Join(t.dir, KeyFile), err)
		}
		c, err := ParseString(strings.TrimSpace(string(b)))
		if err == nil {
			err = c.Verify(t.pins, name, ula, static, now)
		}
		if err != nil {
			return nil, fmt.Errorf("hostcert: %s: %w", path, err)
		}
		certs = []Cert{c}
	}
	t.own = certs
	return slices.Clone(certs), nil
}

// NeedsRenewal reports whether HostCerts would now give other
// certificates than it last did: on a signing host, when it gave none yet
// or the first needs renewal; on another, when CertFile holds another
// certificate than the one last read (it was put in place, or replaced).
func (t *Trust) NeedsRenewal() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.keys) > 0 {
		return len(t.own) == 0 || t.own[0].NeedsRenewal(t.now())
	}
	b, err := readMax(filepath.Join(t.dir, CertFile))
	if err != nil {
		return false
	}
	return len(t.own) == 0 || strings.TrimSpace(string(b)) != t.own[0].String()
}

// Check decides whether the host name, whose records give ula, the static
// key and certs (the TXT record's "cert=" strings, none if none), is one
// of the user's hosts: it is if one of the certificates is valid. A
// refusal is kept for Status until the host is accepted or Keep drops it.
func (t *Trust) Check(name string, ula netip.Addr, static [32]byte, certs []string) error {
	k := checkKey{host: dns.CanonicalName(name), certs: strings.Join(certs, " "), ula: ula, static: static}
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
		if t.Logf != nil {
			t.Logf("trust: refusing %s (tunnel address %v): %v", k.host, ula, err)
		}
	}
	return err
}

// verify checks what does not depend on time or revocation; t.mu is held.
// Of several certificates, the first valid one counts (the one that
// expires last, if several are); with none valid, the error of the first
// under a pinned key, else the first error.
func (t *Trust) verify(k checkKey) checked {
	if k.certs == "" {
		return checked{err: fmt.Errorf("%w in its TXT record", ErrNoCert)}
	}
	var best *checked
	var firstErr error
	for _, s := range strings.Fields(k.certs) {
		c, err := ParseString(s)
		if err == nil {
			// At a time inside the validity; Check compares with now.
			err = c.Verify(t.pins, k.host, k.ula, k.static, time.Unix(int64(min(c.NotBefore, 1<<62)), 0))
		}
		switch {
		case err == nil:
			if best == nil || c.NotAfter > best.cert.NotAfter {
				best = &checked{cert: c}
			}
		case firstErr == nil || errors.Is(firstErr, ErrUnknownKey) && !errors.Is(err, ErrUnknownKey):
			firstErr = err
		}
	}
	if best != nil {
		return *best
	}
	return checked{err: firstErr}
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
		if err := saveRevocations(t.dir, *best); err != nil {
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
	for _, k := range t.keys {
		s.Signers = append(s.Signers, fmt.Sprintf("%x", k.Public().ID()))
	}
	if len(t.own) > 0 {
		s.CertNotAfter = time.Unix(int64(min(t.own[0].NotAfter, 1<<62)), 0).UTC()
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

// loadRevocations reads the list kept in dir, unchecked; the error wraps
// fs.ErrNotExist if there is none.
func loadRevocations(dir string) (Revocations, error) {
	// MaxRevoked keys in base64, "rl=" every 248 characters, and a line
	// break each: under 64 KiB.
	b, err := readLimit(filepath.Join(dir, RevokedFile), 64<<10)
	if err != nil {
		return Revocations{}, err
	}
	return ParseRevocationsTXT(strings.Fields(string(b)))
}

// saveRevocations keeps r in dir: its TXT strings, one a line.
func saveRevocations(dir string, r Revocations) error {
	return WriteFile(filepath.Join(dir, RevokedFile), []byte(strings.Join(r.TXT(), "\n")+"\n"), 0o644)
}

// Resign keeps the revocation list kept in dir valid when the pinned keys
// change from oldPins to newPins: a list valid under oldPins but not
// under newPins is signed again by key (one of newPins) with the next
// serial, and kept. It reports whether it did. Without it, a host that
// drops the user key a list was signed with would forget the revoked
// keys.
func Resign(dir, domain string, oldPins, newPins []PublicKey, key UserKey) (bool, error) {
	r, err := loadRevocations(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil || r.Verify(oldPins, domain) != nil || r.Verify(newPins, domain) == nil {
		return false, nil
	}
	n, err := SignRevocations(key, domain, NextSerial(r.Serial, time.Now()), r.Keys)
	if err != nil {
		return false, err
	}
	return true, saveRevocations(dir, n)
}
