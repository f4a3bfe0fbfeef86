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
	"github.com/prometheus/common/expfmt"

	"github.com/openbtmm/btmm/client/hostcert"
	"github.com/openbtmm/btmm/client/publish"
	"github.com/openbtmm/btmm/client/watch"
)

func sampleStatus() Status {
	return Status{
		Mapping: MappingStatus{External: "203.0.113.7:4500", Endpoint: "203.0.113.7:4500", Protocol: "pcp", Epoch: 1200, GoodUntil: time.Unix(1_900_000_000, 0), Granted: 7, Reboots: 1},
		Publish: publish.Status{Published: time.Unix(1_800_000_000, 0), Updates: map[string]uint64{"NOERROR": 12, "REFUSED": 2}},
		Watch:   watch.Status{Mode: "llq", LLQs: 5, Sessions: 3},
		Peers:   []watch.Peer{{Host: "desktop.alice.members.example.com."}},
		Pinhole: PinholeStatus{Open: true},
		Tunnels: []TunnelStatus{{
			ULA: netip.MustParseAddr("fd00::b"), HasSA: true, TxBytes: 1000, RxBytes: 2000, TxPackets: 10, RxPackets: 20,
			Drops: TunnelDrops{Replay: 3}, LastHandshake: time.Unix(1_800_000_100, 0), Handshakes: 6,
		}},
		TunnelDrops: TunnelCounters{UnknownSPI: 4},
		Trust:       TrustStatus{Mode: "user-key", Status: hostcert.Status{RefusedTotal: 3, Refused: []hostcert.Refusal{{Host: "evil.alice.members.example.com.", Reason: "no certificate"}}}},
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
		`btmm_client_tunnel_handshakes_total{peer="fd00::b"} 6`,
		`btmm_client_watch_mode{mode="llq"} 1`,
		"btmm_client_watch_llqs 5",
		"btmm_client_tunnel_unknown_spi_total 4",
		"btmm_client_server_unreachable_since_timestamp_seconds 0",
		"btmm_client_mapping_observed 0",
		"btmm_client_mapping_granted_total 7",
		"btmm_client_pinhole_open 1",
		"btmm_client_mapping_gateway_reboots_total 1",
		`btmm_client_publish_updates_total{rcode="NOERROR"} 12`,
		`btmm_client_publish_updates_total{rcode="REFUSED"} 2`,
		"btmm_client_watch_sessions_total 3",
		"btmm_client_trust_refused_total 3",
		"btmm_client_trust_refused_hosts 1",
	} {
		// Whole lines: a metric's HELP text may start like its value.
		if !strings.Contains("\n"+string(body), "\n"+want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

// TestMetricsObserved: a host published at the endpoint the server sees,
// behind a NAT that maps per destination, says so in its metrics.
func TestMetricsObserved(t *testing.T) {
	st := Status{Mapping: MappingStatus{External: "100.64.0.2:4500", Endpoint: "23.4.4.2:4500", Observed: "23.4.4.2:4500", ObservedMapping: "dependent"}}
	out, err := testutil.CollectAndFormat(collector{status: func() Status { return st }}, expfmt.TypeTextPlain,
		"btmm_client_mapping_up", "btmm_client_mapping_observed", "btmm_client_mapping_destination_dependent")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"btmm_client_mapping_up 1", "btmm_client_mapping_observed 1", "btmm_client_mapping_destination_dependent 1"} {
		if !strings.Contains("\n"+string(out), "\n"+want+"\n") {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
}
