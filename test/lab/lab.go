package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Root starts every lab's prefix, so that `btmm-lab down` (Cleanup(Root))
// finds every lab, and nothing that is not a lab.
const Root = "btmmlab"

// StateRoot holds one directory per running lab: its miniupnpd
// configurations, pid, lease and log files, and lab.json for Open.
const StateRoot = "/run/btmmlab"

// Internet is the name of the network that joins every uplink.
const Internet = "internet"

// Options choose the lab's shape. The zero value builds the default lab.
type Options struct {
	// Prefix starts every namespace name. It must start with Root; empty
	// means Root, four random hex digits and "-" (say "btmmlab3f2a-").
	Prefix string
	// Dir is where the lab keeps its files; empty means StateRoot/PREFIX
	// (without the trailing "-"). Close removes it if New made it, else
	// only the files in it that the lab wrote. Open finds only labs in
	// StateRoot.
	Dir string
	// DoubleNAT adds the carrier network (a carrier-grade NAT without
	// NAT-PMP) and homeC behind it, with hostC: RFC 6281 §4.4.
	DoubleNAT bool
	// DoubleNATBoth adds a second one: carrier2 (router isp2) and homeD
	// behind it, with hostD.
	DoubleNATBoth bool
	// RoutedPrivate adds, behind the carrier (it needs DoubleNAT), the
	// office: a private subnet that its router officeR routes without NAT
	// or a mapping protocol (RFC 6281 §4.4.2). No host is placed there
	// unless Hosts says so.
	RoutedPrivate bool
	// RandomPorts names NAT routers (isp, routerA, ...) whose masquerade
	// picks a random source port for every flow: a NAT whose mapping
	// depends on the destination ("symmetric"), where the port a server
	// sees is not the one a peer would have to send to.
	RandomPorts []string
	// NATProtocols chooses, per router (routerA, routerB, routerC), the
	// port mapping protocols its miniupnpd answers; a router not named
	// answers DefaultNATProtocols (PCP and NAT-PMP, no UPnP IGD). See
	// NATProtocols for how each is switched.
	NATProtocols map[string]NATProtocols
	// IPv6 gives the homes with an internet uplink (homeA, homeB) and the
	// cafe global IPv6 beside IPv4, without NAT: each network a /64 of
	// 2001:db8::/32 routed by inet, its hosts at fixed addresses in it.
	// A NAT router's stateful forward filter applies to IPv6 too, as a
	// home router's firewall does: nothing from outside gets in unless a
	// flow from inside opened the way. The server gets an IPv6 address
	// too. Masquerade stays IPv4's alone.
	IPv6 bool
	// Hosts places hosts (name → network). Nil means hostA in homeA and
	// hostB in homeB (and hostC in homeC with DoubleNAT). Host names are
	// 1 to 12 letters and digits.
	Hosts map[string]string
}

// Network is one link-layer network with a gateway: a home LAN, the cafe,
// the carrier's customer network. The internet itself is not one of
// these: it is the inet namespace routing between point-to-point uplinks.
type Network struct {
	Name    string       `json:"name"`
	Router  string       `json:"router"`  // the namespace of its gateway
	Subnet  netip.Prefix `json:"subnet"`  // 192.168.1.0/24
	Gateway netip.Addr   `json:"gateway"` // the router's address on it
	MAC     string       `json:"mac"`     // the bridge's fixed MAC address
	// Subnet6 and Gateway6: its global IPv6 /64 and the router's address
	// on it (Options.IPv6; zero otherwise).
	Subnet6  netip.Prefix `json:"subnet6,omitzero"`
	Gateway6 netip.Addr   `json:"gateway6,omitzero"`
	next     int          // the next address handed to a router on it
}

// Router is the gateway of one Network. Its uplink (wan0) is either a
// point-to-point link into the inet namespace or a port on another
// Network (routerC on the carrier).
type Router struct {
	Name   string       `json:"name"`   // namespace
	LAN    string       `json:"lan"`    // the Network it serves, on bridge lan0
	Uplink string       `json:"uplink"` // Internet or a Network name
	Link   netip.Prefix `json:"link"`   // the uplink's subnet
	WAN    netip.Prefix `json:"wan"`    // wan0's address now (a /32 outside Link)
	Upper  netip.Addr   `json:"upper"`  // the upstream gateway (default route)
	InetIf string       `json:"inetIf"` // the interface in inet for an Internet uplink
	// WAN6 and Upper6: wan0's IPv6 address and inet's (Options.IPv6).
	WAN6   netip.Prefix `json:"wan6,omitzero"`
	Upper6 netip.Addr   `json:"upper6,omitzero"`
	NAT    bool         `json:"nat"`    // masquerade on wan0, stateful forward filter
	NATPMP bool         `json:"natpmp"` // miniupnpd runs, answering Protocols on lan0
	// RandomPorts: masquerade with a random source port per flow (a
	// mapping that depends on the destination).
	RandomPorts bool `json:"randomPorts,omitempty"`
	// Protocols are the port mapping protocols miniupnpd answers.
	Protocols NATProtocols `json:"protocols"`
	// Cut lists the IP versions CutIP cut through the router.
	Cut     []int `json:"cut,omitempty"`
	PID     int   `json:"pid"`     // miniupnpd's pid, 0 when stopped
	Started int   `json:"started"` // how many times miniupnpd was started
}

// NATProtocols says which port mapping protocols a router answers on its
// LAN. miniupnpd 2.3.1 has one switch for NAT-PMP and PCP together
// (enable_natpmp: both are served on one socket, port 5351, told apart
// by their version octet) and one for UPnP IGD (enable_upnp: SSDP on
// 239.255.255.250:1900 and an HTTP server for the description and SOAP
// on lan0). So the lab switches UPnP IGD in miniupnpd's configuration,
// and NAT-PMP and PCP both there (off when neither is on) and, when only
// one of them is on, with an nftables rule in the router's input chain
// that rejects the other's requests to port 5351 by their first octet,
// the version (0 NAT-PMP, 2 PCP), with an ICMP port unreachable: the
// router then looks to a client exactly like one without that protocol
// and nothing on port 5351 for it. (A real NAT-PMP-only gateway answers
// a PCP request with NAT-PMP's Unsupported Version instead; the client's
// unit tests cover that answer.)
type NATProtocols struct {
	PCP    bool `json:"pcp"`
	NATPMP bool `json:"natpmp"`
	UPnP   bool `json:"upnp"`
}

// DefaultNATProtocols is what a NAT router answers unless
// Options.NATProtocols says otherwise: NAT-PMP and PCP, no UPnP IGD.
var DefaultNATProtocols = NATProtocols{PCP: true, NATPMP: true}

// Any reports whether p has any protocol on: whether miniupnpd runs.
func (p NATProtocols) Any() bool { return p.PCP || p.NATPMP || p.UPnP }

// String lists the protocols on: "PCP, NAT-PMP, UPnP IGD", or "none".
func (p NATProtocols) String() string {
	var on []string
	for _, x := range []struct {
		on   bool
		name string
	}{{p.PCP, "PCP"}, {p.NATPMP, "NAT-PMP"}, {p.UPnP, "UPnP IGD"}} {
		if x.on {
			on = append(on, x.name)
		}
	}
	if len(on) == 0 {
		return "none"
	}
	return strings.Join(on, ", ")
}

// Server is a namespace with a public address on the internet.
type Server struct {
	Name   string       `json:"name"`
	Addr   netip.Prefix `json:"addr"`
	Upper  netip.Addr   `json:"upper"`
	InetIf string       `json:"inetIf"`
	// Addr6 and Upper6: its IPv6 address and inet's (Options.IPv6).
	Addr6  netip.Prefix `json:"addr6,omitzero"`
	Upper6 netip.Addr   `json:"upper6,omitzero"`
}

// Host is an end host (a laptop, a desktop). It owns one veth per network
// it has been on, named eth-NETWORK; the one of the network it is on now
// is up and addressed, the others are down.
type Host struct {
	Name    string     `json:"name"`
	Num     int        `json:"num"`     // its host part on every network (.10, .11, ...)
	Network string     `json:"network"` // where it is now
	Addr    netip.Addr `json:"addr"`    // its address there
	// Addr6 is its global IPv6 address there, if the network has IPv6.
	Addr6 netip.Addr `json:"addr6,omitzero"`
	Links []string   `json:"links"` // networks it has a veth into
}

// Lab is a running lab. Its maps describe the lab; read them, but change
// it only with its methods, which keep them (and lab.json) current.
type Lab struct {
	Prefix   string              `json:"prefix"`
	Dir      string              `json:"dir"`
	OwnDir   bool                `json:"ownDir"` // New made Dir; Close removes it
	Networks map[string]*Network `json:"networks"`
	Routers  map[string]*Router  `json:"routers"`
	Servers  map[string]*Server  `json:"servers"`
	Hosts    map[string]*Host    `json:"hosts"`
	// Namespaces lists every namespace of the lab by its short name, in
	// the order they were made.
	Namespaces []string `json:"namespaces"`
	// NextIndex is the last interface index given to a veth (see index).
	NextIndex int `json:"nextIndex"`

	logf   func(format string, args ...any)
	mu     sync.Mutex // guards the maps' contents and the fields below
	closed bool
	procs  map[string]*proc // running miniupnpd by router
	// procsMu serializes the changes to procs by startNATLocked, which
	// build runs for several routers at once (all under mu).
	procsMu sync.Mutex
}

// Logf is the type of the logger New takes (testing.TB's Logf fits).
type Logf = func(format string, args ...any)

// New builds a lab: it needs root, ip, nft and miniupnpd and says which
// is missing. On any error it removes what it made. logf may be nil.
func New(logf Logf, opts Options) (l *Lab, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if m := Missing(); len(m) > 0 {
		return nil, fmt.Errorf("lab: cannot build a network lab: %s", strings.Join(m, "; "))
	}
	prefix := opts.Prefix
	if prefix != "" && !strings.HasPrefix(prefix, Root) {
		return nil, fmt.Errorf("lab: prefix %q must start with %q", prefix, Root)
	}
	if err := os.MkdirAll(StateRoot, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	// The lab's directory under StateRoot claims the prefix: Mkdir is
	// atomic, so two labs never build (and then remove) the same one.
	for try := 0; ; try++ {
		p := prefix
		if p == "" {
			if p, err = freePrefix(); err != nil {
				return nil, err
			}
		}
		err := os.Mkdir(claimDir(p), 0o755)
		if err == nil {
			prefix = p
			break
		}
		if prefix != "" || try == 20 {
			return nil, fmt.Errorf("lab: prefix %q is taken (%v): if it is a leftover, remove it with Cleanup or `btmm-lab down %s`", p, err, p)
		}
	}
	claim := claimDir(prefix)
	if existing, _ := namespaces(prefix); len(existing) > 0 {
		os.Remove(claim)
		return nil, fmt.Errorf("lab: namespaces with prefix %q exist already (%s): remove them with Cleanup or `btmm-lab down %s`",
			prefix, strings.Join(existing, " "), prefix)
	}
	dir := opts.Dir
	if dir == "" {
		dir = claim
	}
	l, err = plan(prefix, dir, opts)
	if err != nil {
		os.Remove(claim)
		return nil, err
	}
	l.logf = logf
	defer func() {
		if err != nil {
			if cerr := l.Close(); cerr != nil {
				logf("lab: removing the partial lab: %v", cerr)
			}
			l = nil
		}
	}()
	if _, err := os.Stat(dir); dir == claim || errors.Is(err, os.ErrNotExist) {
		l.OwnDir = true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return l, fmt.Errorf("lab: %w", err)
	}
	l.removeFiles() // a crashed lab's lease file would bring back its mappings
	if err := removeResolvers(prefix); err != nil {
		return l, err
	}
	if err := l.build(); err != nil {
		return l, err
	}
	return l, l.save()
}

// claimDir is a lab's directory under StateRoot.
func claimDir(prefix string) string {
	return filepath.Join(StateRoot, strings.TrimSuffix(prefix, "-"))
}

// freePrefix picks a random prefix that no namespace uses yet.
func freePrefix() (string, error) {
	for range 20 {
		var b [2]byte
		rand.Read(b[:])
		p := Root + hex.EncodeToString(b[:]) + "-"
		ns, err := namespaces(p)
		if err != nil {
			return "", err
		}
		if len(ns) == 0 {
			if _, err := os.Stat(claimDir(p)); err != nil {
				return p, nil
			}
		}
	}
	return "", errors.New("lab: no free prefix")
}

// Close stops the lab's processes (miniupnpd, and anything else still
// running in its namespaces), deletes its namespaces (and with them every
// veth and bridge), their resolver configurations (SetResolver) and its
// directory. It may be called more than once,
// and on a lab that was built only in part.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	var errs []error
	for name := range l.procs {
		if err := l.stopNATLocked(name); err != nil {
			errs = append(errs, err)
		}
	}
	l.mu.Unlock()
	if err := removeNamespaces(l.Prefix); err != nil {
		errs = append(errs, err)
	}
	if err := removeResolvers(l.Prefix); err != nil {
		errs = append(errs, err)
	}
	if l.OwnDir {
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, err)
		}
	} else {
		l.removeFiles()
	}
	if err := os.Remove(claimDir(l.Prefix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeFiles removes the files a lab writes into its directory.
func (l *Lab) removeFiles() {
	if l.Dir == "" {
		return
	}
	os.Remove(filepath.Join(l.Dir, "lab.json"))
	os.Remove(filepath.Join(l.Dir, "lab.json.tmp"))
	for name, r := range l.Routers {
		if r.NATPMP {
			for _, ext := range []string{"conf", "pid", "leases", "log"} {
				os.Remove(l.natFile(name, ext))
			}
		}
	}
}

// Cleanup removes what labs whose prefix starts with prefix left behind:
// it stops every process in their namespaces, deletes the namespaces and
// their directories under StateRoot and their resolver configurations
// (SetResolver). Cleanup(Root) removes every lab.
func Cleanup(prefix string) error {
	if !strings.HasPrefix(prefix, Root) {
		return fmt.Errorf("lab: refusing to clean up %q: a lab prefix starts with %q", prefix, Root)
	}
	errs := []error{removeNamespaces(prefix), removeResolvers(prefix)}
	dirs, _ := filepath.Glob(filepath.Join(StateRoot, strings.TrimSuffix(prefix, "-")+"*"))
	for _, d := range dirs {
		errs = append(errs, os.RemoveAll(d))
	}
	return errors.Join(errs...)
}

// Running lists the prefixes of the labs that have namespaces now.
func Running() ([]string, error) {
	all, err := namespaces(Root)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ns := range all {
		if i := strings.Index(ns, "-"); i > 0 && !slices.Contains(out, ns[:i+1]) {
			out = append(out, ns[:i+1])
		}
	}
	sort.Strings(out)
	return out, nil
}

// NS returns the full namespace name of a lab namespace ("hostA" →
// "btmmlab3f2a-hostA"); a full name is returned as it is.
func (l *Lab) NS(name string) string {
	if strings.HasPrefix(name, l.Prefix) {
		return name
	}
	return l.Prefix + name
}

// Exec returns the command `ip netns exec NS name args...`.
func (l *Lab) Exec(ns string, name string, args ...string) *exec.Cmd {
	return exec.Command(tool("ip"), append([]string{"netns", "exec", l.NS(ns), name}, args...)...)
}

// Addr returns a namespace's main IPv4 address: a host's address on the
// network it is on now, a server's address, a router's address on its
// LAN (the gateway its hosts use; see WAN for its public side), and for
// inet its address towards the server. It is invalid for unknown names.
func (l *Lab) Addr(ns string) netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	ns = strings.TrimPrefix(ns, l.Prefix)
	if h, ok := l.Hosts[ns]; ok {
		return h.Addr
	}
	if s, ok := l.Servers[ns]; ok {
		return s.Addr.Addr()
	}
	if r, ok := l.Routers[ns]; ok {
		return l.Networks[r.LAN].Gateway
	}
	if ns == "inet" {
		for _, s := range l.Servers {
			return s.Upper
		}
	}
	return netip.Addr{}
}

// Addr6 returns a host's global IPv6 address on the network it is on
// now, or a server's; invalid without one.
func (l *Lab) Addr6(ns string) netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	ns = strings.TrimPrefix(ns, l.Prefix)
	if h, ok := l.Hosts[ns]; ok {
		return h.Addr6
	}
	if s, ok := l.Servers[ns]; ok {
		return s.Addr6.Addr()
	}
	return netip.Addr{}
}

// Gateway6 returns the IPv6 gateway of the network a host is on now, or
// an invalid address if it has no IPv6.
func (l *Lab) Gateway6(host string) netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.Hosts[strings.TrimPrefix(host, l.Prefix)]; ok {
		return l.Networks[h.Network].Gateway6
	}
	return netip.Addr{}
}

// WAN returns a router's address on its uplink: the public address for a
// router on the internet. router may also name the network it serves
// ("homeA" for "routerA").
func (l *Lab) WAN(router string) netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.routerLocked(router); r != nil {
		return r.WAN.Addr()
	}
	return netip.Addr{}
}

// Gateway returns the gateway of the network a host is on now.
func (l *Lab) Gateway(host string) netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.Hosts[strings.TrimPrefix(host, l.Prefix)]; ok {
		return l.Networks[h.Network].Gateway
	}
	return netip.Addr{}
}

// Where returns the network a host is on now.
func (l *Lab) Where(host string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.Hosts[strings.TrimPrefix(host, l.Prefix)]; ok {
		return h.Network
	}
	return ""
}

func (l *Lab) routerLocked(name string) *Router {
	name = strings.TrimPrefix(name, l.Prefix)
	if r, ok := l.Routers[name]; ok {
		return r
	}
	if n, ok := l.Networks[name]; ok {
		return l.Routers[n.Router]
	}
	return nil
}
