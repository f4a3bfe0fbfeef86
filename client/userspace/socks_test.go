package userspace

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
)

// appendRequest encodes req as a client would (RFC 1928 §4).
func appendRequest(b []byte, req socksRequest) []byte {
	b = append(b, socksVersion, req.cmd, 0, req.atyp)
	switch req.atyp {
	case atypIPv4, atypIPv6:
		b = append(b, req.addr.AsSlice()...)
	case atypDomain:
		b = append(b, byte(len(req.host)))
		b = append(b, req.host...)
	}
	return append(b, byte(req.port>>8), byte(req.port))
}

func TestReadRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want socksRequest
		rep  int // -1: no reply (I/O or version error)
	}{
		{"IPv6", appendRequest(nil, socksRequest{cmd: 1, atyp: 4, addr: netip.MustParseAddr("fd00::b"), port: 22}), socksRequest{cmd: 1, atyp: 4, addr: netip.MustParseAddr("fd00::b"), port: 22}, RepSucceeded},
		{"IPv4", []byte{5, 1, 0, 1, 192, 0, 2, 1, 0, 80}, socksRequest{cmd: 1, atyp: 1, addr: netip.MustParseAddr("192.0.2.1"), port: 80}, RepSucceeded},
		{"name", append([]byte{5, 1, 0, 3, 7}, "desktop\x01\xbb"...), socksRequest{cmd: 1, atyp: 3, host: "desktop", port: 443}, RepSucceeded},
		{"empty name", []byte{5, 1, 0, 3, 0, 0, 80}, socksRequest{}, RepGeneralFailure},
		{"bad atyp", []byte{5, 1, 0, 2, 1, 2, 3, 4, 0, 80}, socksRequest{}, RepAddrNotSupported},
		{"BIND", []byte{5, 2, 0, 1, 192, 0, 2, 1, 0, 80}, socksRequest{cmd: 2, atyp: 1, addr: netip.MustParseAddr("192.0.2.1"), port: 80}, RepCommandNotSupported},
		{"SOCKS4", []byte{4, 1, 0, 80, 192, 0, 2, 1, 0}, socksRequest{}, -1},
		{"short", []byte{5, 1, 0, 4, 0xfd}, socksRequest{}, -1},
		{"short name", []byte{5, 1, 0, 3, 10, 'a'}, socksRequest{}, -1},
	} {
		r := bytes.NewReader(append(tc.in, "after"...))
		got, err := readRequest(r)
		var se *socksError
		rep := -1
		switch {
		case err == nil:
			rep = RepSucceeded
		case errors.As(err, &se):
			rep = int(se.rep)
		}
		if rep != tc.rep || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v, reply %d", tc.name, got, err, tc.want, tc.rep)
		}
		if err == nil {
			if rest, _ := io.ReadAll(r); string(rest) != "after" {
				t.Errorf("%s: left %q, want what follows the request", tc.name, rest)
			}
		}
	}
}

func TestReadGreeting(t *testing.T) {
	for _, tc := range []struct {
		in     []byte
		noAuth bool
		ok     bool
	}{
		{[]byte{5, 1, 0}, true, true},
		{[]byte{5, 2, 2, 0}, true, true},
		{[]byte{5, 1, 2}, false, true}, // username/password only
		{[]byte{5, 0}, false, true},
		{[]byte{4, 1, 0}, false, false},
		{[]byte{5, 3, 0}, false, false}, // short
	} {
		noAuth, err := readGreeting(bytes.NewReader(tc.in))
		if noAuth != tc.noAuth || (err == nil) != tc.ok {
			t.Errorf("%x: %v, %v; want %v, ok %v", tc.in, noAuth, err, tc.noAuth, tc.ok)
		}
	}
}

func TestAppendReply(t *testing.T) {
	got := appendReply(nil, RepSucceeded, netip.MustParseAddrPort("[fd00::a]:49152"))
	want := append(append([]byte{5, 0, 0, 4}, netip.MustParseAddr("fd00::a").AsSlice()...), 0xc0, 0)
	if !bytes.Equal(got, want) {
		t.Errorf("success reply %x, want %x", got, want)
	}
	if got, want := appendReply(nil, RepHostUnreachable, netip.AddrPort{}), []byte{5, 4, 0, 1, 0, 0, 0, 0, 0, 0}; !bytes.Equal(got, want) {
		t.Errorf("failure reply %x, want %x", got, want)
	}
}

// FuzzReadRequest: readRequest never panics, never reads past the
// request, and a request it accepts encodes back to the octets it read.
func FuzzReadRequest(f *testing.F) {
	f.Add(appendRequest(nil, socksRequest{cmd: 1, atyp: 4, addr: netip.MustParseAddr("fd00::b"), port: 22}))
	f.Add(append([]byte{5, 1, 0, 3, 7}, "desktop\x00\x50"...))
	f.Add([]byte{5, 1, 0, 1, 192, 0, 2, 1, 0, 80})
	f.Add([]byte{5, 1, 0, 3, 0, 0, 80})
	f.Add([]byte{5, 2, 0, 9})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		req, err := readRequest(r)
		read := in[:len(in)-r.Len()]
		var se *socksError
		switch {
		case err == nil:
			// RSV (octet 2) is not checked: encode with what was read.
			enc := appendRequest(nil, req)
			enc[2] = read[2]
			if !bytes.Equal(enc, read) {
				t.Fatalf("read %x, parsed %+v, which encodes as %x", read, req, enc)
			}
			if req.cmd != cmdConnect {
				t.Fatalf("command %d accepted", req.cmd)
			}
		case errors.As(err, &se):
			if se.rep == RepSucceeded {
				t.Fatal("error with reply 0")
			}
		}
		// Without the first octet the version check must stop it.
		if len(in) >= 4 && in[0] != socksVersion && !errors.Is(err, errSOCKSVersion) {
			t.Fatalf("version %d: %v", in[0], err)
		}
	})
}
