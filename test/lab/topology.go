package lab

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Topology describes the lab for people: every namespace with its
// addresses, routes, NAT and NAT-PMP, as a tree from the internet down.
func (l *Lab) Topology() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	w := func(depth int, f string, args ...any) {
		b.WriteString(strings.Repeat("    ", depth))
		fmt.Fprintf(&b, f, args...)
		b.WriteByte('\n')
	}
	w(0, "lab %s  (namespace NAME is %sNAME; files in %s)", l.Prefix, l.Prefix, l.Dir)
	w(0, "internet [inet]: 23.0.0.0/8 addresses, closed (no default route, no link out of the lab)")
	for _, name := range sortedKeys(l.Servers) {
		s := l.Servers[name]
		w(1, "%s [%s]: %v, default via %v", s.Name, s.Name, s.Addr, s.Upper)
		if s.Addr6.IsValid() {
			w(2, "IPv6 %v, default via %v", s.Addr6, s.Upper6)
		}
	}
	var network func(depth int, n *Network)
	network = func(depth int, n *Network) {
		r := l.Routers[n.Router]
		kind := "routed, no NAT"
		if r.NAT {
			kind = "NAT (masquerade on wan0, stateful forward filter)"
		}
		w(depth, "%s %v: router [%s], %s, %s", n.Name, n.Subnet, r.Name, kind, l.natStateLocked(r))
		note := ""
		if r.NATPMP && r.Uplink != Internet {
			note = "  (behind another NAT: NAT-PMP answers result 3)"
		}
		w(depth+1, "wan0 %v, default via %v%s", r.WAN, r.Upper, note)
		w(depth+1, "lan0 %v (bridge %s)", netip.PrefixFrom(n.Gateway, n.Subnet.Bits()), n.MAC)
		if n.Subnet6.IsValid() {
			filter := "routed, no filter"
			if r.NAT {
				filter = "routed, no NAT; the filter lets in only flows from inside"
			}
			w(depth+1, "IPv6: wan0 %v, default via %v; lan0 %v (%s)",
				r.WAN6, r.Upper6, netip.PrefixFrom(n.Gateway6, n.Subnet6.Bits()), filter)
		}
		for _, v := range r.Cut {
			w(depth+1, "IPv%d CUT (CutIP)", v)
		}
		for _, hn := range sortedKeys(l.Hosts) {
			if h := l.Hosts[hn]; h.Network == n.Name {
				w(depth+1, "%s [%s]: %v, default via %v (eth-%s, MAC %s)", h.Name, h.Name, h.Addr, n.Gateway, n.Name, hostMAC(h))
				if h.Addr6.IsValid() {
					w(depth+2, "IPv6 %v, default via %v", h.Addr6, n.Gateway6)
				}
			}
		}
		for _, cn := range l.networkNames() {
			if c := l.Networks[cn]; l.Routers[c.Router].Uplink == n.Name {
				network(depth+1, c)
			}
		}
	}
	for _, name := range l.networkNames() {
		if n := l.Networks[name]; l.Routers[n.Router].Uplink == Internet {
			network(1, n)
		}
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (l *Lab) save() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.saveLocked()
}

// saveLocked writes lab.json, which Open reads.
func (l *Lab) saveLocked() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(l.Dir, "lab.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return os.Rename(tmp, filepath.Join(l.Dir, "lab.json"))
}

// Open attaches to a running lab that another process built (say
// `btmm-lab up`), from its lab.json. Its methods work as on the lab New
// returned; Close removes it.
func Open(prefix string, logf Logf) (*Lab, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if !strings.HasPrefix(prefix, Root) {
		return nil, fmt.Errorf("lab: %q is not a lab prefix (they start with %q)", prefix, Root)
	}
	if !strings.HasSuffix(prefix, "-") {
		prefix += "-"
	}
	dir := claimDir(prefix)
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		return nil, fmt.Errorf("lab: no running lab %s: %w", prefix, err)
	}
	l := &Lab{logf: logf, procs: map[string]*proc{}}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", filepath.Join(dir, "lab.json"), err)
	}
	for _, n := range l.Networks {
		n.next = 2
		for _, r := range l.Routers {
			if r.Uplink == n.Name {
				n.next++
			}
		}
	}
	return l, nil
}
