package daemon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/openbtmm/btmm/client/portmap"
)

// The client's metrics are read from Status at each scrape, so that the
// parts (portmap, publish, watch, tunnel) keep no metrics of their own and
// the numbers a scrape shows are the ones `btmm-client status` shows.
// Names are in the btmm_client_ namespace; the README lists them.
var (
	mMappingUp     = desc("mapping_up", "1 when the host has a public endpoint (a NAT mapping, no NAT, or the endpoint the server sees), else 0.")
	mMappingObs    = desc("mapping_observed", "1 when the published endpoint is the one the server sees (no mapping protocol gave one), else 0.")
	mMappingDep    = desc("mapping_destination_dependent", "1 when the NAT was seen to give each destination a port of its own (no direct path), else 0.")
	mMappingGrant  = desc("mapping_granted_total", "Mappings the gateway granted: the first, renewals and re-creations.")
	mMappingReboot = desc("mapping_gateway_reboots_total", "Times the gateway was found to have lost its mappings.")
	mPinholeOpen   = desc("pinhole_open", "1 while a PCP pinhole keeps the tunnel port open on the host's global IPv6 address, else 0.")
	mPublishUpd    = desc("publish_updates_total", "UPDATEs that published the host's records, by the server's answer (an RCODE's name, or \"no answer\").", "rcode")
	mWatchSessions = desc("watch_sessions_total", "Subscription sessions (DNS Push or LLQ) set up: the first and each reconnection.")
	mMappingPublic = desc("mapping_public", "1 when the host is on a public network (no NAT), else 0.")
	mMappingProto  = desc("mapping_protocol", "1 for the protocol that holds the mapping (pcp, natpmp or upnp), 0 for the others.", "protocol")
	mMappingEpoch  = desc("mapping_epoch_seconds", "The gateway's epoch (NAT-PMP's seconds since start of epoch, PCP's epoch time) at the last mapping; 0 with UPnP IGD.")
	mMappingUntil  = desc("mapping_good_until_timestamp_seconds", "When the current mapping's lifetime ends (Unix time).")
	mPublished     = desc("published_timestamp_seconds", "When the host's records were last published (Unix time; 0: never).")
	mPublishError  = desc("publish_error", "1 while the last UPDATE failed, else 0.")
	mWatchLLQs     = desc("watch_llqs", "Long-lived queries held on the server.")
	mWatchMode     = desc("watch_mode", "1 for the watcher's current mode (dns-push, llq, poll or connecting).", "mode")
	mServerDown    = desc("server_unreachable_since_timestamp_seconds", "When the server stopped answering (Unix time); 0 while it answers.")
	mPeers         = desc("peers", "The user's other hosts in the table.")
	mTunnelRxBytes = desc("tunnel_receive_bytes_total", "Inner octets received from a peer through the tunnel.", "peer")
	mTunnelTxBytes = desc("tunnel_transmit_bytes_total", "Inner octets sent to a peer through the tunnel.", "peer")
	mTunnelRxPkts  = desc("tunnel_receive_packets_total", "Inner packets received from a peer through the tunnel.", "peer")
	mTunnelTxPkts  = desc("tunnel_transmit_packets_total", "Inner packets sent to a peer through the tunnel.", "peer")
	mTunnelDrops   = desc("tunnel_drops_total", "Inbound packets of a peer's SAs refused, by reason.", "peer", "reason")
	mTunnelSA      = desc("tunnel_sa_up", "1 when the tunnel to a peer has a working SA pair, else 0.", "peer")
	mTunnelHS      = desc("tunnel_last_handshake_timestamp_seconds", "When the tunnel to a peer last completed a handshake, a rekey included (Unix time).", "peer")
	mTunnelHSs     = desc("tunnel_handshakes_total", "SA pairs put to use with a peer: the first handshake and each rekey.", "peer")
	mTunnelHSFail  = desc("tunnel_handshake_failures_total", "Handshake responses from a peer that did not authenticate.", "peer")
	mTunnelHSTO    = desc("tunnel_handshake_timeouts_total", "Handshakes with a peer given up for want of a response.", "peer")
	mTunnelRoams   = desc("tunnel_roams_total", "Moves of a peer's endpoint learnt from its authentic packets.", "peer")
	mTunnelUnknown = desc("tunnel_unknown_spi_total", "ESP packets for an SPI with no SA here.")
	mTunnelBadHS   = desc("tunnel_refused_handshakes_total", "Handshake messages refused (unknown key, another user, garbage).")
	mTunnelCookies = desc("tunnel_cookie_replies_total", "Initiations answered with a cookie reply under load.")
	mTunnelLimited = desc("tunnel_rate_limited_total", "Initiations dropped for their source's rate under load.")

	mTrustRefused = desc("trust_refused_total", "Hosts' records refused for want of a valid certificate from the pinned user key (each distinct set of records once).")
	mTrustHosts   = desc("trust_refused_hosts", "Hosts in the user's list refused now.")
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("btmm_client_"+name, help, labels, nil)
}

// collector is a prometheus.Collector of a daemon's Status.
type collector struct{ status func() Status }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	unix := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	m := st.Mapping
	gauge(mMappingUp, flag(m.Endpoint != ""))
	gauge(mMappingObs, flag(m.Observed != "" && m.Endpoint == m.Observed))
	gauge(mMappingDep, flag(m.ObservedMapping == "dependent"))
	counter(mMappingGrant, m.Granted)
	counter(mMappingReboot, m.Reboots)
	gauge(mPinholeOpen, flag(st.Pinhole.Open))
	for rcode, n := range st.Publish.Updates {
		counter(mPublishUpd, n, rcode)
	}
	counter(mWatchSessions, st.Watch.Sessions)
	gauge(mMappingPublic, flag(m.Public))
	for _, p := range portmap.DefaultOrder {
		gauge(mMappingProto, flag(m.Protocol == p.Key()), p.Key())
	}
	gauge(mMappingEpoch, float64(m.Epoch))
	gauge(mMappingUntil, unix(m.GoodUntil))
	gauge(mPublished, unix(st.Publish.Published))
	gauge(mPublishError, flag(st.Publish.Error != ""))
	gauge(mWatchLLQs, float64(st.Watch.LLQs))
	for _, mode := range []string{"dns-push", "llq", "poll", "connecting"} {
		gauge(mWatchMode, flag(st.Watch.Mode == mode), mode)
	}
	gauge(mServerDown, unix(st.Watch.Since))
	gauge(mPeers, float64(len(st.Peers)))
	for _, tu := range st.Tunnels {
		p := tu.ULA.String()
		counter(mTunnelRxBytes, tu.RxBytes, p)
		counter(mTunnelTxBytes, tu.TxBytes, p)
		counter(mTunnelRxPkts, tu.RxPackets, p)
		counter(mTunnelTxPkts, tu.TxPackets, p)
		for reason, n := range map[string]uint64{"replay": tu.Drops.Replay, "bad_icv": tu.Drops.BadICV, "malformed": tu.Drops.Malformed, "bad_source": tu.Drops.BadSource} {
			counter(mTunnelDrops, n, p, reason)
		}
		gauge(mTunnelSA, flag(tu.HasSA), p)
		gauge(mTunnelHS, unix(tu.LastHandshake), p)
		counter(mTunnelHSs, tu.Handshakes, p)
		counter(mTunnelHSFail, tu.HandshakeFail, p)
		counter(mTunnelHSTO, tu.HandshakeTO, p)
		counter(mTunnelRoams, tu.Roams, p)
	}
	d := st.TunnelDrops
	counter(mTunnelUnknown, d.UnknownSPI)
	counter(mTunnelBadHS, d.BadHandshake)
	counter(mTunnelCookies, d.CookieReplies)
	counter(mTunnelLimited, d.RateLimited)
	counter(mTrustRefused, st.Trust.RefusedTotal)
	gauge(mTrustHosts, float64(len(st.Trust.Refused)))
}

// serveMetrics serves the client's metrics at http://addr/metrics until
// ctx ends.
func serveMetrics(ctx context.Context, ln net.Listener, status func() Status) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{status: status})
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
