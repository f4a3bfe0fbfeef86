package daemon

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/client/config"
	"github.com/openbtmm/btmm/client/hostcert"
	"github.com/openbtmm/btmm/client/tunnel/handshake"
	"github.com/openbtmm/btmm/client/watch"
)

// The daemon's side of package hostcert: on a host enrolled with a user
// key (state_dir/user.pub), the host publishes its certificate, and a
// peer goes to the tunnel, the proxies and status only if its certificate
// verifies under the pinned key and its key is not revoked. A host that
// is not enrolled trusts the server, as before the user key: it says so
// at start and in status.

// TrustStatus is the trust as status shows it.
type TrustStatus struct {
	// Mode is "user-key" (peers need a certificate from the pinned user
	// key) or "server" (not enrolled: any host the server lists).
	Mode string `json:"mode"`
	hostcert.Status
}

// loadTrust reads the host's trust from its state directory: nil, with a
// warning, on a host not enrolled.
func loadTrust(cfg *config.Config, logf func(string, ...any)) (*hostcert.Trust, error) {
	t, err := hostcert.Load(cfg.StateDir, cfg.Domain())
	if errors.Is(err, hostcert.ErrNotEnrolled) {
		logf("TRUST: no user key pinned in %s: any host the server lists is trusted, so whoever runs the server can join this user's tunnels; btmm-client enroll pins the user key (see the README, Security)", cfg.StateDir)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	t.Logf = logf
	if t.Warning != "" {
		logf("TRUST: %s", t.Warning)
	}
	st := t.Status()
	logf("trust: peers need a certificate from user key %v; revocation list serial %d", st.Pins, st.RevocationSerial)
	return t, nil
}

// tunnelPSK is the tunnel's PSK: public on an enrolled host (the user key
// certifies the static keys: hostcert.TunnelPSK), else derived from the
// TSIG secret as before.
func (d *Daemon) tunnelPSK() ([32]byte, error) {
	if d.trust != nil {
		return hostcert.TunnelPSK(d.cfg.Domain()), nil
	}
	return TunnelPSK(d.key.Secret, d.key.Name)
}

// peers is the watcher's table, less the hosts the trust refuses.
func (d *Daemon) peers() []watch.Peer {
	all := d.watch.Peers()
	if d.trust == nil {
		return all
	}
	out := all[:0:0]
	hosts := make([]string, 0, len(all))
	for _, p := range all {
		hosts = append(hosts, p.Host)
		if !p.ULA.IsValid() || p.Key == "" {
			continue // incomplete: the tunnel waits for the rest anyway
		}
		k, err := handshake.ParsePublicKey(p.Key)
		if err != nil {
			continue
		}
		if err := d.trust.Check(p.Host, p.ULA, k, p.Certs); err != nil {
			continue
		}
		out = append(out, p)
	}
	d.trust.Keep(hosts)
	return out
}

// trustRecords takes the TXT records at the revocation list's name.
func (d *Daemon) trustRecords(name string, rrs []dns.RR) {
	var txts [][]string
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok {
			txts = append(txts, t.Txt)
		}
	}
	changed, err := d.trust.SetRevocations(txts)
	if err != nil {
		d.logf("trust: %s: %v", name, err)
	}
	if changed {
		r, _ := d.trust.Revocations()
		d.logf("trust: revocation list serial %d: %d host keys revoked", r.Serial, len(r.Keys))
		if r.Revoked(d.keys.Public) {
			d.logf("TRUST: this host's key is on the user's revocation list: the user's other hosts refuse it")
		}
		// Keep it published, so that it outlives the lease of whoever
		// published it first.
		d.publishHost()
	}
}

// certificates returns the host's certificates and the records it
// publishes for the trust: none when not enrolled.
func (d *Daemon) certificates() ([]string, []dns.RR) {
	if d.trust == nil {
		return nil, nil
	}
	certs, err := d.trust.HostCerts(d.cfg.HostName(), d.id.ULA, d.keys.Public)
	if d.certLog.changed(err) && err != nil {
		d.logf("TRUST: %v: publishing no certificate, so no peer accepts this host", err)
	}
	if err != nil {
		return nil, nil
	}
	var strs []string
	for _, c := range certs {
		strs = append(strs, c.String())
	}
	var extra []dns.RR
	if r, ok := d.trust.Revocations(); ok {
		extra = append(extra, &dns.TXT{
			Hdr: dns.RR_Header{Name: hostcert.RevocationName(d.cfg.Domain()), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: recordTTL},
			Txt: r.TXT(),
		})
	}
	return strs, extra
}

// trustStatus is the trust's part of Status.
func (d *Daemon) trustStatus() TrustStatus {
	if d.trust == nil {
		return TrustStatus{Mode: "server", Status: hostcert.Status{Refused: []hostcert.Refusal{}}}
	}
	return TrustStatus{Mode: "user-key", Status: d.trust.Status()}
}

// trustInterval is how often trustTick runs.
const trustInterval = 10 * time.Second

// trustTick runs every trustInterval: a certificate due for renewal (or
// one that was missing: host.cert put in place since) is signed or read
// and published again, and the peers are checked again (a certificate
// may have expired meanwhile).
func (d *Daemon) trustTick() {
	if d.trust == nil {
		return
	}
	if d.trust.NeedsRenewal() {
		if !d.trust.Status().CertNotAfter.IsZero() {
			d.logf("trust: renewing this host's certificate")
		}
		d.publishHost()
	}
	d.reconcile()
}

// errLog tells whether an error differs from the last one, so that one
// that recurs every trustInterval is logged once.
type errLog struct {
	mu   sync.Mutex
	last string
}

func (l *errLog) changed(err error) bool {
	msg := fmt.Sprint(err)
	l.mu.Lock()
	defer l.mu.Unlock()
	if msg == l.last {
		return false
	}
	l.last = msg
	return true
}
