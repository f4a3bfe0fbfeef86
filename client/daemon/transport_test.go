package daemon

import (
	"testing"

	"github.com/openbtmm/btmm/client/config"
)

// TestTransportTLS: the transports "tcp" and "udp", which the
// configuration accepts, start without TLS settings instead of failing
// with "does not use TLS"; "tls" gets its TLS configuration.
func TestTransportTLS(t *testing.T) {
	for _, tr := range []string{"tcp", "udp"} {
		cfg := config.Default()
		cfg.Transport = tr
		conf, err := transportTLS(cfg)
		if err != nil || conf != nil {
			t.Errorf("transport %q: TLS config %v, error %v; want none and no error", tr, conf, err)
		}
	}
	cfg := config.Default()
	conf, err := transportTLS(cfg)
	if err != nil || conf == nil {
		t.Fatalf("transport %q: TLS config %v, error %v", cfg.Transport, conf, err)
	}
}
