package tsigupdate

import (
	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	// updates counts the UPDATEs answered, by RCODE.
	updates = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "tsig_update",
		Name:      "updates_total",
		Help:      "Counter of UPDATE requests answered, by RCODE.",
	}, []string{"server", "rcode"})
	// tsigFailures counts requests whose TSIG failed, by TSIG error.
	tsigFailures = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "tsig_update",
		Name:      "tsig_failures_total",
		Help:      "Counter of requests refused for their TSIG, by error (BADKEY, BADSIG, BADTIME, FORMERR).",
	}, []string{"server", "error"})
	// rateLimited counts UPDATEs refused because their key sent too many.
	rateLimited = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "tsig_update",
		Name:      "rate_limited_total",
		Help:      "Counter of UPDATEs refused (REFUSED) because their key was over its rate.",
	})
)
