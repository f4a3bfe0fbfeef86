package route

import (
	"bytes"
	"fmt"
	"os/exec"
)

// DefaultIPv4 returns the IPv4 default route as route(8) reports it; ok
// is false if there is none.
//
// This file is cross-compiled in CI; it has not been run on a Mac yet.
func DefaultIPv4() (d Default, ok bool, err error) {
	out, err := exec.Command("route", "-n", "get", "-inet", "default").Output()
	if err != nil {
		if bytes.Contains(out, []byte("not in table")) || len(out) == 0 {
			return Default{}, false, nil
		}
		return Default{}, false, fmt.Errorf("route: %w", err)
	}
	d, ok = ParseRouteGet(bytes.NewReader(out))
	return d, ok, nil
}

// DefaultIPv6 returns the IPv6 default route as route(8) reports it; ok
// is false if there is none.
func DefaultIPv6() (d Default, ok bool, err error) {
	out, err := exec.Command("route", "-n", "get", "-inet6", "default").Output()
	if err != nil {
		if bytes.Contains(out, []byte("not in table")) || len(out) == 0 {
			return Default{}, false, nil
		}
		return Default{}, false, fmt.Errorf("route: %w", err)
	}
	d, ok = ParseRouteGet6(bytes.NewReader(out))
	return d, ok, nil
}
