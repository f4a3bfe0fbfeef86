package tunnel

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestExchange: a datagram sent with Exchange leaves from the tunnel's own
// port, and the answer from that address is handed back rather than
// taken for ESP; with no answer, the context ends it.
func TestExchange(t *testing.T) {
	n := startNode(t, "fd00::1", [32]byte{1})
	server := listen(t)
	defer server.Close()
	go func() {
		buf := make([]byte, 1500)
		k, from, err := server.ReadFromUDP(buf)
		if err != nil {
			return
		}
		// Answer with what the server saw: the tunnel's port.
		server.WriteToUDP(append([]byte(from.String()+" "), buf[:k]...), from)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := n.t.Exchange(ctx, server.LocalAddr().(*net.UDPAddr).AddrPort(), []byte("where am I"), nil)
	if want := n.addr().String() + " where am I"; err != nil || string(got) != want {
		t.Fatalf("Exchange = %q, %v; want %q", got, err, want)
	}
	if c := n.t.Counters(); c.InvalidUDP != 0 || c.UnknownSPI != 0 {
		t.Errorf("the answer was also taken for tunnel traffic: %+v", c)
	}

	silent := listen(t)
	defer silent.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := n.t.Exchange(ctx, silent.LocalAddr().(*net.UDPAddr).AddrPort(), []byte("anyone?"), nil); err == nil {
		t.Error("an exchange with a silent address returned no error")
	}
}
