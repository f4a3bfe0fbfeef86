package dnspush

import (
	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// One server per listener set, so no server label.
var (
	liveSessions = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: "dns_push", Name: "sessions",
		Help: "Gauge of open DNS Push connections.",
	})
	liveSubscriptions = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: "dns_push", Name: "subscriptions",
		Help: "Gauge of live DNS Push subscriptions.",
	})
	subscribes = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "dns_push", Name: "subscribe_total",
		Help: "Counter of SUBSCRIBE requests, by the response's RCODE.",
	}, []string{"rcode"})
	pushes = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "dns_push", Name: "push_total",
		Help: "Counter of PUSH messages sent.",
	})
	sessionsClosed = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "dns_push", Name: "closed_total",
		Help: "Counter of sessions the server closed, by reason.",
	}, []string{"reason"})
)
