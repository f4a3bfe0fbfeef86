package watch

import (
	"context"
	"fmt"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

// poll reads the host list and each host's records with ordinary signed
// queries every PollInterval, for servers that offer no LLQs. It returns
// when ctx ends or a query fails.
func (w *Watcher) poll(ctx context.Context) error {
	server := w.cfg.Server
	if server == "" {
		server = w.cfg.Resolver.Server
	}
	w.setStatus(func(s *Status) { s.Server, s.Mode, s.Error, s.LLQs, s.Since = server, "poll", "", 0, time.Time{} })
	for {
		if err := w.pollOnce(ctx, server); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(w.cfg.PollInterval):
		}
	}
}

func (w *Watcher) pollOnce(ctx context.Context, server string) error {
	q := func(name string, t uint16) ([]dns.RR, error) {
		m := new(dns.Msg).SetQuestion(name, t)
		m.SetTsig(w.cfg.Key.Name, w.cfg.Key.Algorithm, 300, time.Now().Unix())
		c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigProvider: tsigauth.HMAC(w.cfg.Key.Secret)}
		r, _, err := c.ExchangeContext(ctx, m, server)
		if err != nil {
			return nil, fmt.Errorf("watch: polling %s: %w", name, err)
		}
		// miekg/dns checks a reply's TSIG only if it has one.
		if r.IsTsig() == nil {
			return nil, fmt.Errorf("watch: polling %s: the reply is not signed", name)
		}
		// A failed query is not an empty answer: it must not empty the table.
		if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
			return nil, fmt.Errorf("watch: polling %s: %s", name, dns.RcodeToString[r.Rcode])
		}
		return r.Answer, nil
	}
	list, err := q(w.listName(), dns.TypePTR)
	if err != nil {
		return err
	}
	for _, name := range w.cfg.Extra {
		rrs, err := q(dns.CanonicalName(name), dns.TypeTXT)
		if err != nil {
			return err
		}
		w.cfg.OnRecords(dns.CanonicalName(name), rrs)
	}
	seen := make(map[string]bool)
	for _, rr := range list {
		p, ok := rr.(*dns.PTR)
		if !ok || dns.CanonicalName(p.Ptr) == w.cfg.Self {
			continue
		}
		host := dns.CanonicalName(p.Ptr)
		seen[host] = true
		srv, err := q("_autotunnel._udp."+host, dns.TypeSRV)
		if err != nil {
			return err
		}
		h := &hostState{name: host, srv: srv}
		for _, rr := range srv {
			if s, ok := rr.(*dns.SRV); ok {
				h.label = dns.CanonicalName(s.Target)
			}
		}
		if h.label != "" {
			for _, t := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT} {
				rrs, err := q(h.label, t)
				if err != nil {
					return err
				}
				h.a = append(h.a, rrs...)
			}
		}
		w.mu.Lock()
		if old, ok := w.peers[host]; ok {
			h.peer = old.peer
		}
		w.update(h)
		w.peers[host] = h
		w.mu.Unlock()
	}
	w.mu.Lock()
	for host := range w.peers {
		if !seen[host] {
			delete(w.peers, host)
		}
	}
	w.mu.Unlock()
	w.notify()
	return nil
}
