package tunnel

import (
	"bytes"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/openbtmm/btmm/client/tunnel/esp"
)

// FuzzReceive feeds arbitrary datagrams, as anyone on the Internet can
// send them to the tunnel port, into a tunnel with a working SA: none may
// be delivered, move the peer's endpoint or break the tunnel. The seeds
// are real ESP from the peer (replayed, so refused), a handshake message
// and the short forms Classify knows.
func FuzzReceive(f *testing.F) {
	var psk [32]byte
	a := startNodeWith(f, "fd00::a", psk, func(c *Config) { c.Logf = nil })
	b := startNodeWith(f, "fd00::b", psk, func(c *Config) { c.Logf = nil })
	a.t.SetPeer(b.peer())
	b.t.SetPeer(a.peer())
	p := ipv6UDP(a.ula, b.ula, []byte("seed"))
	a.tun.in <- p
	expectPacket(f, b, p)

	// A real ESP packet from a to b, sealed with a's SA and received once
	// from a's address: every copy after that is a replay.
	a.t.mu.RLock()
	pa := a.t.peers[b.ula]
	a.t.mu.RUnlock()
	kp := pa.cur.Load()
	kp.sendMu.Lock()
	buf := make([]byte, esp.HeaderLen, esp.SealedLen(len(p)))
	sealed, err := kp.send.Seal(buf[:0], p)
	kp.sendMu.Unlock()
	if err != nil {
		f.Fatal(err)
	}
	seed := bytes.Clone(sealed)
	if n := b.t.receive(sealed, &conn.StdNetEndpoint{AddrPort: a.addr()}); n != len(p) {
		f.Fatalf("the genuine packet: %d octets delivered, want %d", n, len(p))
	}
	f.Add(seed)
	f.Add([]byte{0xff})
	f.Add([]byte{0, 0, 0, 0, 1, 2, 3, 4})
	f.Add(append(esp.AppendNonESPMarker(nil), make([]byte, 200)...))
	f.Add([]byte{0, 0, 1, 0, 0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})

	from := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("127.0.0.1:9")}
	want := b.t.Status()[0].Endpoint
	f.Fuzz(func(t *testing.T, data []byte) {
		// receive opens in place, as readUDP does with its buffers.
		dgram := make([]byte, len(data), len(data)+esp.HeaderLen)
		copy(dgram, data)
		if n := b.t.receive(dgram, from); n != 0 {
			t.Fatalf("a forged datagram delivered %d octets: %x", n, data)
		}
		if got := b.t.Status()[0].Endpoint; got != want {
			t.Fatalf("a forged datagram moved the peer to %v", got)
		}
	})
	// Still working.
	r := ipv6UDP(b.ula, a.ula, []byte("after the fuzz"))
	b.tun.in <- r
	expectPacket(f, a, r)
}
