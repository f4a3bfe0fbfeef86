package route

import (
	"fmt"
	"os"
)

// procRoute is the kernel's routing table; a variable for tests.
var procRoute = "/proc/net/route"

// DefaultIPv4 returns the kernel's IPv4 default route with the lowest
// metric; ok is false if there is none.
func DefaultIPv4() (d Default, ok bool, err error) {
	f, err := os.Open(procRoute)
	if err != nil {
		return Default{}, false, fmt.Errorf("route: %w", err)
	}
	defer f.Close()
	d, ok = Parse(f)
	return d, ok, nil
}
