package daemon

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openbtmm/btmm/client/publish"
	"github.com/openbtmm/btmm/client/watch"
)

func sampleStatus() Status {
	return Status{
		Mapping: MappingStatus{External: "203.0.113.7:4500", Protocol: "pcp", Epoch: 1200, GoodUntil: time.Unix(1_900_000_000, 0)},
		Publish: publish.Status{Published: time.Unix(1_800_000_000, 0)},
		Watch:   watch.Status{Mode: "llq", LLQs: 5},
		Peers:   []watch.Peer{{Host: "desktop.alice.members.example.com."}},
		Tunnels: []TunnelStatus{{
			ULA: netip.MustParseAddr("fd00::b"), HasSA: true, TxBytes: 1000, RxBytes: 2000, TxPackets: 10, RxPackets: 20,
			Drops: TunnelDrops{Replay: 3}, LastHandshake: time.Unix(1_800_000_100, 0),
		}},
		TunnelDrops: TunnelCounters{UnknownSPI: 4},
	}
}

// TestMetrics: the metrics served at /metrics say what Status says (the
// mapping, the peer, its tunnel bytes and drops), and pass Prometheus's
// linter.
func TestMetrics(t *testing.T) {
	c := collector{status: sampleStatus}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) != 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveMetrics(ctx, ln, sampleStatus) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveMetrics: %v", err)
		}
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"btmm_client_mapping_up 1",
		`btmm_client_mapping_protocol{protocol="pcp"} 1`,
		`btmm_client_mapping_protocol{protocol="natpmp"} 0`,
		`btmm_client_mapping_protocol{protocol="upnp"} 0`,
		"btmm_client_peers 1",
		`btmm_client_tunnel_receive_bytes_total{peer="fd00::b"} 2000`,
		`btmm_client_tunnel_transmit_bytes_total{peer="fd00::b"} 1000`,
		`btmm_client_tunnel_drops_total{peer="fd00::b",reason="replay"} 3`,
		`btmm_client_watch_mode{mode="llq"} 1`,
		"btmm_client_watch_llqs 5",
		"btmm_client_tunnel_unknown_spi_total 4",
		"btmm_client_server_unreachable_since_timestamp_seconds 0",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}
