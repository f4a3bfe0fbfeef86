//go:build !linux

package portmap

import "syscall"

// reuseControl does nothing here: btmm-client runs on Linux. Without
// SO_REUSEPORT only one process on the host can hear announcements.
func reuseControl(network, address string, rc syscall.RawConn) error { return nil }
