package ddullease

import (
	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// leases counts the UPDATEs that asked for a lease.
var leases = promauto.NewCounter(prometheus.CounterOpts{
	Namespace: plugin.Namespace,
	Subsystem: "ddul_lease",
	Name:      "requests_total",
	Help:      "Counter of UPDATE requests that carried an UPDATE-LEASE option.",
})
