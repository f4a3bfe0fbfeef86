package route

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
)

// This file is cross-compiled in CI; it has not been run on a Mac yet.

// DefaultIPv4 returns the IPv4 default route as route(8) reports it; ok
// is false if there is none.
func DefaultIPv4() (d Default, ok bool, err error) { return routeGet("-inet", ParseRouteGet) }

// DefaultIPv6 returns the IPv6 default route as route(8) reports it; ok
// is false if there is none.
func DefaultIPv6() (d Default, ok bool, err error) { return routeGet("-inet6", ParseRouteGet6) }

// routeGet runs `route -n get FAMILY default` and reads its output.
func routeGet(family string, parse func(io.Reader) (Default, bool)) (Default, bool, error) {
	out, err := exec.Command("route", "-n", "get", family, "default").Output()
	if err != nil {
		if bytes.Contains(out, []byte("not in table")) || len(out) == 0 {
			return Default{}, false, nil
		}
		return Default{}, false, fmt.Errorf("route: %w", err)
	}
	d, ok := parse(bytes.NewReader(out))
	return d, ok, nil
}
