package route

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

const header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"

func nativeLittle() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

func TestParse(t *testing.T) {
	// Written as this machine writes them: 192.168.1.1 is 0101A8C0 on a
	// little-endian one.
	gw1, gw2 := "0101A8C0", "FE00000A"
	if !nativeLittle() {
		gw1, gw2 = "C0A80101", "0A0000FE"
	}
	for _, tc := range []struct {
		name, table, iface, gw string
	}{
		{"one default", "eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n" +
			"eth0\t00000000\t" + gw1 + "\t0003\t0\t0\t100\t00000000\t0\t0\t0\n", "eth0", "192.168.1.1"},
		{"lowest metric wins", "eth0\t00000000\t" + gw1 + "\t0003\t0\t0\t600\t00000000\t0\t0\t0\n" +
			"wlan0\t00000000\t" + gw2 + "\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
			"usb0\t00000000\t" + gw1 + "\t0003\t0\t0\t100\t00000000\t0\t0\t0\n", "wlan0", "10.0.0.254"},
		{"a route that is not up", "eth0\t00000000\t" + gw1 + "\t0002\t0\t0\t0\t00000000\t0\t0\t0\n" +
			"tun0\t00000000\t00000000\t0001\t0\t0\t50\t00000000\t0\t0\t0\n", "tun0", ""},
		{"no gateway flag: a device route", "ppp0\t00000000\t00000000\t0001\t0\t0\t100\t00000000\t0\t0\t0\n", "ppp0", ""},
		{"only a subnet route", "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", "", ""},
		{"a /1 is not a default", "tun0\t00000000\t00000000\t0001\t0\t0\t0\t00000080\t0\t0\t0\n", "", ""},
		{"garbage lines skipped", "eth0 zz\n\nwlan0\t00000000\tnothex\t0003\t0\t0\tx\t00000000\n" +
			"eth1\t00000000\t" + gw1 + "\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", "eth1", "192.168.1.1"},
		{"empty table", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := Parse(strings.NewReader(header + tc.table))
			if ok != (tc.iface != "") || d.Iface != tc.iface {
				t.Fatalf("Parse = %+v, %v; want interface %q", d, ok, tc.iface)
			}
			var want netip.Addr
			if tc.gw != "" {
				want = netip.MustParseAddr(tc.gw)
			}
			if d.Gateway != want {
				t.Errorf("gateway %v, want %v", d.Gateway, want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(header + "eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n")
	f.Fuzz(func(t *testing.T, table string) {
		d, ok := Parse(strings.NewReader(table))
		if ok && d.Iface == "" {
			t.Fatalf("a default route without an interface: %+v", d)
		}
	})
}

func TestParseRouteGet(t *testing.T) {
	const viaGateway = `   route to: default
destination: default
       mask: default
    gateway: 192.168.1.1
  interface: en0
      flags: <UP,GATEWAY,DONE,STATIC,PRCLONING>
 recvpipe  sendpipe  ssthresh  rtt,msec    rttvar  hopcount      mtu     expire
       0         0         0         0         0         0      1500         0
`
	d, ok := ParseRouteGet(strings.NewReader(viaGateway))
	if !ok || d.Iface != "en0" || d.Gateway != netip.MustParseAddr("192.168.1.1") {
		t.Errorf("via a gateway: %+v %v", d, ok)
	}
	// A default route straight out of an interface names no address.
	d, ok = ParseRouteGet(strings.NewReader("   route to: default\ndestination: default\n    gateway: link#14\n  interface: utun3\n"))
	if !ok || d.Iface != "utun3" || d.Gateway.IsValid() {
		t.Errorf("via an interface: %+v %v", d, ok)
	}
	if d, ok := ParseRouteGet(strings.NewReader("route: writing to routing socket: not in table\n")); ok {
		t.Errorf("no default route: %+v", d)
	}
}

// Lines of /proc/net/ipv6_route as Linux 6.x writes them.
const (
	v6Subnet   = "20010db8000100010000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
	v6Default  = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000100010000000000000001 00000400 00000003 00000000 00000003     eth0\n"
	v6LLDef    = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000064 00000003 00000000 00000003    wlan0\n"
	v6Loopback = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
	v6Device   = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00000001     tun0\n"
	v6Down     = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000100010000000000000009 00000001 00000003 00000000 00000002     eth1\n"
)

func TestParse6(t *testing.T) {
	for _, tc := range []struct {
		name, table, iface, gw string
	}{
		{"one default", v6Subnet + v6Default, "eth0", "2001:db8:1:1::1"},
		{"lowest metric wins; a link-local gateway gets its zone", v6Default + v6LLDef, "wlan0", "fe80::1%wlan0"},
		{"the loopback's unreachable default is none", v6Loopback, "", ""},
		{"a device route", v6Device, "tun0", ""},
		{"a route that is not up", v6Down + v6Subnet, "", ""},
		{"only a subnet route", v6Subnet, "", ""},
		{"garbage lines skipped", "zz 00\n\n" + strings.Repeat("0", 31) + " 00 x x x x x x x eth0\n" + v6Default, "eth0", "2001:db8:1:1::1"},
		{"empty table", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := Parse6(strings.NewReader(tc.table))
			if ok != (tc.iface != "") || d.Iface != tc.iface {
				t.Fatalf("Parse6 = %+v, %v; want interface %q", d, ok, tc.iface)
			}
			var want netip.Addr
			if tc.gw != "" {
				want = netip.MustParseAddr(tc.gw)
			}
			if d.Gateway != want {
				t.Errorf("gateway %v, want %v", d.Gateway, want)
			}
		})
	}
}

func FuzzParse6(f *testing.F) {
	f.Add(v6Subnet + v6Default + v6LLDef)
	f.Fuzz(func(t *testing.T, table string) {
		d, ok := Parse6(strings.NewReader(table))
		if ok && d.Iface == "" || d.Gateway.IsValid() && !d.Gateway.Is6() {
			t.Fatalf("Parse6 = %+v, %v", d, ok)
		}
	})
}

func TestParseRouteGet6(t *testing.T) {
	const out = `   route to: default
destination: default
       mask: default
    gateway: fe80::1
  interface: en0
      flags: <UP,GATEWAY,DONE,STATIC,PRCLONING>
`
	d, ok := ParseRouteGet6(strings.NewReader(out))
	if !ok || d.Iface != "en0" || d.Gateway != netip.MustParseAddr("fe80::1%en0") {
		t.Errorf("ParseRouteGet6 = %+v %v", d, ok)
	}
	if d, ok := ParseRouteGet(strings.NewReader(out)); !ok || d.Gateway.IsValid() {
		t.Errorf("ParseRouteGet took an IPv6 gateway: %+v %v", d, ok)
	}
}
