package llq

import (
	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The LLQ server is one per listener set, not per server block, so its
// metrics carry no server label.
var (
	liveLLQs = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: "llq", Name: "live",
		Help: "Gauge of LLQs set up (challenged or established) and not yet ended.",
	})
	requests = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "llq", Name: "requests_total",
		Help: "Counter of LLQ requests answered, by opcode and LLQ error, or refusal.",
	}, []string{"result"})
	rateLimited = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "llq", Name: "rate_limited_total",
		Help: "Counter of LLQ setups answered SERV-FULL because their key (or address) was over its rate.",
	})
	eventsSent = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "llq", Name: "events_sent_total",
		Help: "Counter of events sent (first transmissions).",
	})
	eventsResent = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "llq", Name: "events_resent_total",
		Help: "Counter of events sent again for want of an acknowledgement.",
	})
	eventsAcked = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "llq", Name: "events_acknowledged_total",
		Help: "Counter of events acknowledged.",
	})
	eventsDropped = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "llq", Name: "dropped_total",
		Help: "Counter of LLQs ended because their client did not acknowledge events.",
	})
)
