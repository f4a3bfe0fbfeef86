package shared

import (
	"errors"
	"testing"
)

type thing struct {
	name   string
	config int
	closed bool
}

// TestRegistry: the first Acquire opens, later ones reuse (and may adapt
// or refuse), only the last Release closes, and a key closed can be
// opened afresh.
func TestRegistry(t *testing.T) {
	var r Registry[*thing]
	opened := 0
	open := func(cfg int) func() (*thing, error) {
		return func() (*thing, error) { opened++; return &thing{name: "a", config: cfg}, nil }
	}
	reuse := func(cfg int) func(*thing) error {
		return func(th *thing) error { th.config = cfg; return nil }
	}
	closeIt := func(th *thing) error { th.closed = true; return nil }

	a, running, err := r.Acquire("k", open(1), reuse(1))
	if err != nil || running || opened != 1 {
		t.Fatalf("first Acquire: %v %v, opened %d", running, err, opened)
	}
	b, running, _ := r.Acquire("k", open(2), reuse(2))
	if !running || b != a || opened != 1 || a.config != 2 {
		t.Fatalf("second Acquire: running %v, same %v, opened %d, config %d", running, b == a, opened, a.config)
	}
	refuse := errors.New("refused")
	if _, _, err := r.Acquire("k", open(3), func(*thing) error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("a refused reuse: %v", err)
	}
	r.Release("k", closeIt)
	if a.closed {
		t.Fatal("closed while still acquired")
	}
	r.Release("k", closeIt) // the refused Acquire counted nothing
	if !a.closed {
		t.Fatal("not closed by the last Release")
	}
	if c, running, _ := r.Acquire("k", open(4), nil); running || c == a || opened != 2 {
		t.Fatalf("after the last Release: running %v, opened %d", running, opened)
	}
	if err := r.Release("nothing", closeIt); err != nil {
		t.Fatalf("Release of an unknown key: %v", err)
	}
}
