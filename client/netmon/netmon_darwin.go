package netmon

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// subscribe reads the routing socket (route(4)), where the kernel reports
// every address, interface and route change; stop closes it.
//
// This file is cross-compiled in CI; it has not been run on a Mac yet.
func subscribe(_ []string) (events <-chan struct{}, stop func(), err error) {
	fd, err := unix.Socket(unix.AF_ROUTE, unix.SOCK_RAW, unix.AF_UNSPEC)
	if err != nil {
		return nil, nil, fmt.Errorf("netmon: routing socket: %w", err)
	}
	// Non-blocking, so that the runtime's poller waits for it and Close
	// ends a pending Read.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("netmon: routing socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "route")
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			// struct rt_msghdr: msglen u16, version u8, type u8, ...
			if n < 4 {
				continue
			}
			switch buf[3] {
			case unix.RTM_NEWADDR, unix.RTM_DELADDR, unix.RTM_IFINFO,
				unix.RTM_ADD, unix.RTM_DELETE, unix.RTM_CHANGE:
				notify(ch)
			}
		}
	}()
	return ch, func() { f.Close() }, nil
}
