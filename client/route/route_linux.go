package route

import (
	"fmt"
	"os"
)

// procRoute and procRoute6 are the kernel's routing tables; variables for
// tests.
var (
	procRoute  = "/proc/net/route"
	procRoute6 = "/proc/net/ipv6_route"
)

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

// DefaultIPv6 returns the kernel's IPv6 default route with the lowest
// metric; ok is false if there is none (or no IPv6).
func DefaultIPv6() (d Default, ok bool, err error) {
	f, err := os.Open(procRoute6)
	if os.IsNotExist(err) {
		return Default{}, false, nil
	}
	if err != nil {
		return Default{}, false, fmt.Errorf("route: %w", err)
	}
	defer f.Close()
	d, ok = Parse6(f)
	return d, ok, nil
}
