package srvdiscovery

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

var three = []Target{
	{"ns1.members.example.com.", 853},
	{"ns2.members.example.com.", 853},
	{"ns3.example.net.", 853},
}

func users(n int) []string {
	u := make([]string, n)
	for i := range u {
		u[i] = fmt.Sprintf("user%d", i)
	}
	return u
}

// TestChooseGolden pins the hash: were it to change, an upgrade would move
// users between servers.
func TestChooseGolden(t *testing.T) {
	// Also computed independently: the highest (SHA-256("user\x00name")[:8],
	// SHA-256("user\x00name\x00port")[:8]) as big-endian numbers.
	want := map[string]string{
		"":      "ns3.example.net.",
		"alice": "ns1.members.example.com.",
		"bob":   "ns2.members.example.com.",
		"carol": "ns3.example.net.",
		"dave":  "ns1.members.example.com.",
		"erin":  "ns1.members.example.com.",
	}
	for user, target := range want {
		if got := Choose(user, three).Name; got != target {
			t.Errorf("Choose(%q) = %s, want %s", user, got, target)
		}
	}
}

func TestChooseStable(t *testing.T) {
	reversed := slices.Clone(three)
	slices.Reverse(reversed)
	upper := make([]Target, len(three))
	for i, t := range three {
		upper[i] = Target{strings.ToUpper(strings.TrimSuffix(t.Name, ".")), t.Port}
	}
	for _, u := range users(1000) {
		want := Choose(u, three)
		for _, got := range []Target{
			Choose(u, three),
			Choose(u, reversed),
			Choose(strings.ToUpper(u), three),
			Rank(u, three)[0],
		} {
			if got != want {
				t.Fatalf("%s: %v and %v", u, got, want)
			}
		}
		// Only the case of the name differs.
		if got := Choose(u, upper); !strings.EqualFold(got.Name, strings.TrimSuffix(want.Name, ".")) {
			t.Fatalf("%s: %v with upper-case names, %v without", u, got, want)
		}
	}
	if (Choose("alice", nil) != Target{}) {
		t.Error("a choice from no targets")
	}
	if got := Choose("alice", three[:1]); got != three[0] {
		t.Errorf("the only target: %v", got)
	}
}

// TestChooseEven: 10 000 users over 3 targets, each within 5% of a third.
func TestChooseEven(t *testing.T) {
	const n = 10000
	count := make(map[Target]int)
	for _, u := range users(n) {
		count[Choose(u, three)]++
	}
	for _, target := range three {
		share := float64(count[target]) / n
		if math.Abs(share-1.0/3) > 0.05/3 {
			t.Errorf("%v has %d users (%.1f%%), want 33.3%% ± 5%% of that", target, count[target], 100*share)
		}
	}
}

// TestChooseMovement: a fourth target takes about a quarter of the users,
// and only users that now go to it move.
func TestChooseMovement(t *testing.T) {
	const n = 10000
	four := append(slices.Clone(three), Target{"ns4.members.example.com.", 853})
	moved := 0
	for _, u := range users(n) {
		before, after := Choose(u, three), Choose(u, four)
		if before == after {
			continue
		}
		moved++
		if after != four[3] {
			t.Fatalf("%s moved from %v to %v, not to the new target", u, before, after)
		}
	}
	if share := float64(moved) / n; share > 0.30 || share < 0.20 {
		t.Errorf("%d of %d users moved (%.1f%%), want about 25%%", moved, n, 100*share)
	}

	// Taking a target away moves its users only, each to the next in its
	// ranking.
	for _, u := range users(n) {
		rank := Rank(u, three)
		after := Choose(u, three[1:])
		switch {
		case rank[0] != three[0] && after != rank[0]:
			t.Fatalf("%s moved from %v to %v though its target stayed", u, rank[0], after)
		case rank[0] == three[0] && after != rank[1]:
			t.Fatalf("%s moved from %v to %v, not to its second choice %v", u, rank[0], after, rank[1])
		}
	}
}

// TestChooseSameHost: a user goes to the same host for every service the
// host offers, whatever the ports; ports of one host share its users.
func TestChooseSameHost(t *testing.T) {
	withPort := func(targets []Target, port uint16) []Target {
		out := slices.Clone(targets)
		for i := range out {
			out[i].Port = port
		}
		return out
	}
	updateTLS, llq := withPort(three, 853), withPort(three, 5352)
	llqTwo := llq[:2] // a service offered by fewer hosts
	for _, u := range users(1000) {
		host := Choose(u, updateTLS).Name
		if got := Choose(u, llq).Name; got != host {
			t.Fatalf("%s: update on %s, LLQ on %s", u, host, got)
		}
		if got := Choose(u, llqTwo).Name; host != three[2].Name && got != host {
			t.Fatalf("%s: update on %s, LLQ on %s though that host has LLQ", u, host, got)
		}
	}

	ports := []Target{{"ns1.members.example.com.", 53}, {"ns1.members.example.com.", 5353}, {"ns2.members.example.com.", 53}}
	count := make(map[Target]int)
	for _, u := range users(10000) {
		count[Choose(u, ports)]++
	}
	for target, want := range map[Target]float64{ports[0]: 0.25, ports[1]: 0.25, ports[2]: 0.5} {
		if share := float64(count[target]) / 10000; math.Abs(share-want) > 0.05*want {
			t.Errorf("%v has %.1f%% of the users, want %.0f%%", target, 100*share, 100*want)
		}
	}
}

func TestRank(t *testing.T) {
	for _, u := range users(100) {
		r := Rank(u, three)
		if len(r) != len(three) {
			t.Fatalf("%s: rank %v", u, r)
		}
		for _, target := range three {
			if !slices.Contains(r, target) {
				t.Fatalf("%s: rank %v lacks %v", u, r, target)
			}
		}
		// Each prefix of the ranking is what the targets left choose.
		for i := range r {
			rest := slices.DeleteFunc(slices.Clone(three), func(t Target) bool { return slices.Contains(r[:i], t) })
			if got := Choose(u, rest); got != r[i] {
				t.Fatalf("%s: Choose without %v = %v, want %v", u, r[:i], got, r[i])
			}
		}
	}
}
