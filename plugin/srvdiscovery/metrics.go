package srvdiscovery

import (
	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// answers counts the SRV answers given, by the target chosen.
var answers = promauto.NewCounterVec(prometheus.CounterOpts{
	Namespace: plugin.Namespace,
	Subsystem: "srv_discovery",
	Name:      "answers_total",
	Help:      "Counter of SRV answers for update and LLQ servers, by service and chosen target.",
}, []string{"server", "service", "target", "port"})
