package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNATProtocols: each router answers the protocols it is given, and
// only those: UPnP IGD alone on routerA (found by SSDP from hostA, a
// WANIPConnection:2 in its description; nothing on port 5351),
// PCP alone on routerB (a PCP ANNOUNCE request is answered, a NAT-PMP
// request gets an ICMP port unreachable), and NAT-PMP alone on routerC
// (the other way round).
func TestNATProtocols(t *testing.T) {
	l := Start(t, Options{DoubleNAT: true, NATProtocols: map[string]NATProtocols{
		"routerA": {UPnP: true},
		"routerB": {PCP: true},
		"routerC": {NATPMP: true},
	}})
	t.Log("\n" + l.Topology())

	// routerA: UPnP IGD, found by SSDP, its description on lan0.
	t0 := time.Now()
	loc := ssdpSearch(t, l, "hostA", "urn:schemas-upnp-org:service:WANIPConnection:2")
	if loc == nil || loc.Hostname() != "192.168.1.1" {
		t.Fatalf("SSDP from hostA: location %v, want routerA's lan0\n%s", loc, l.NATLog("routerA"))
	}
	t.Logf("UPnP IGD on routerA found by SSDP in %v at %v", time.Since(t0).Round(time.Millisecond), loc)
	conn, err := l.Dial("hostA", "tcp", loc.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", loc.Path, loc.Host)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	desc, _ := io.ReadAll(conn)
	conn.Close()
	if !strings.Contains(string(desc), "urn:schemas-upnp-org:service:WANIPConnection:2") {
		t.Fatalf("routerA's description has no WANIPConnection:2:\n%s", desc)
	}
	for _, v := range []byte{0, 2} {
		if got := ask5351(t, l, "hostA", v); !errors.Is(got, syscall.ECONNREFUSED) {
			t.Errorf("routerA, version %d to port 5351: %v, want port unreachable", v, got)
		}
	}

	// routerB: PCP, not NAT-PMP.
	if err := ask5351(t, l, "hostB", 2); err != nil {
		t.Errorf("routerB, PCP: %v", err)
	}
	if err := ask5351(t, l, "hostB", 0); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("routerB, NAT-PMP: %v, want port unreachable", err)
	}
	// routerC: NAT-PMP, not PCP.
	if err := ask5351(t, l, "hostC", 0); err != nil {
		t.Errorf("routerC, NAT-PMP: %v", err)
	}
	if err := ask5351(t, l, "hostC", 2); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("routerC, PCP: %v, want port unreachable", err)
	}
	// The switches hold across a restart.
	if err := l.RestartNAT("routerB", true); err != nil {
		t.Fatal(err)
	}
	if err := ask5351(t, l, "hostB", 0); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("routerB after a reboot, NAT-PMP: %v, want port unreachable", err)
	}
	if err := ask5351(t, l, "hostB", 2); err != nil {
		t.Errorf("routerB after a reboot, PCP: %v", err)
	}
	if !strings.Contains(l.Topology(), "PCP: miniupnpd pid") {
		t.Errorf("topology does not say what routerB answers:\n%s", l.Topology())
	}
}

// ssdpSearch sends an SSDP M-SEARCH for st from ns and returns the
// LOCATION of the first answer (nil if none came within 3 s).
func ssdpSearch(t *testing.T, l *Lab, ns, st string) *url.URL {
	t.Helper()
	var loc *url.URL
	err := l.Go(ns, func() error {
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		req := "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: " + st + "\r\n\r\n"
		to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("239.255.255.250:1900"))
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 2048)
		for range 2 {
			if _, err := c.WriteToUDP([]byte(req), to); err != nil {
				return err
			}
		}
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return nil
			}
			for _, line := range strings.Split(string(buf[:n]), "\r\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "LOCATION") {
					loc, err = url.Parse(strings.TrimSpace(v))
					return err
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// ask5351 sends, from ns to its gateway's port 5351, a NAT-PMP external
// address request (version 0) or a PCP ANNOUNCE request (version 2), and
// returns nil if an answer of that version came within a second.
func ask5351(t *testing.T, l *Lab, ns string, version byte) error {
	t.Helper()
	var answer error
	err := l.Go(ns, func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.168.1.1:5351")))
		if err != nil {
			return err
		}
		defer c.Close()
		req := []byte{0, 0}
		if version == 2 {
			req = make([]byte, 24)
			req[0] = 2
			a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap().As4()
			binary.BigEndian.PutUint16(req[18:20], 0xffff)
			copy(req[20:24], a[:])
		}
		c.Write(req)
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 1100)
		n, err := c.Read(buf)
		switch {
		case err != nil:
			answer = err
		case n < 4 || buf[0] != version || buf[1]&0x80 == 0:
			answer = errors.New("an answer of another kind")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return answer
}
