package srvdiscovery

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Target is one server of a service: a host name and a port.
type Target struct {
	Name string // fully qualified; compared case-insensitively
	Port uint16
}

// String returns the target as NAME:PORT.
func (t Target) String() string { return t.Name + ":" + strconv.Itoa(int(t.Port)) }

// Choose returns the target that user's hosts are sent to: the first of
// Rank(user, targets), or the zero Target if there are none. user is the
// user's label (the one directly below the zone, "" for the apex); its case
// does not matter.
func Choose(user string, targets []Target) Target {
	if len(targets) == 0 {
		return Target{}
	}
	best, bestScore := targets[0], score(user, targets[0])
	for _, t := range targets[1:] {
		if s := score(user, t); s.beats(bestScore, t, best) {
			best, bestScore = t, s
		}
	}
	return best
}

// Rank returns targets in user's order of preference, by rendezvous
// (highest random weight) hashing: every target gets a score that depends
// only on the user and that target, and the highest score wins. So the
// order is the same on every server and after every restart; a target
// added takes from each other target only the users it now outscores (about
// 1/n of them), and a target removed gives each of its users to that user's
// next target, leaving everyone else where they were.
//
// The score is first the host name's (SHA-256 of "user\x00name", its first
// 8 octets as a big-endian number), then the port's (the same over
// "user\x00name\x00port"), so that a user is sent to the same host for every
// service and transport that host offers, and only then to one of its
// ports. Exact ties, which SHA-256 makes practically impossible, go to the
// smaller name, then the smaller port.
func Rank(user string, targets []Target) []Target {
	type scored struct {
		t Target
		s rendezvous
	}
	all := make([]scored, len(targets))
	for i, t := range targets {
		all[i] = scored{t, score(user, t)}
	}
	slices.SortStableFunc(all, func(a, b scored) int {
		switch {
		case a.s.beats(b.s, a.t, b.t):
			return -1
		case b.s.beats(a.s, b.t, a.t):
			return 1
		}
		return 0
	})
	out := make([]Target, len(all))
	for i, a := range all {
		out[i] = a.t
	}
	return out
}

// rendezvous is one target's score for one user.
type rendezvous struct{ host, port uint64 }

func score(user string, t Target) rendezvous {
	user = strings.ToLower(user)
	name := dns.CanonicalName(t.Name)
	h := sha256.Sum256([]byte(user + "\x00" + name))
	p := sha256.Sum256([]byte(user + "\x00" + name + "\x00" + strconv.Itoa(int(t.Port))))
	return rendezvous{binary.BigEndian.Uint64(h[:8]), binary.BigEndian.Uint64(p[:8])}
}

// beats reports whether target t with score s comes before target u with
// score o.
func (s rendezvous) beats(o rendezvous, t, u Target) bool {
	if c := cmp.Compare(s.host, o.host); c != 0 {
		return c > 0
	}
	if c := cmp.Compare(s.port, o.port); c != 0 {
		return c > 0
	}
	if c := cmp.Compare(dns.CanonicalName(t.Name), dns.CanonicalName(u.Name)); c != 0 {
		return c < 0
	}
	return t.Port < u.Port
}
