package llq

import (
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
)

func TestParse(t *testing.T) {
	tests := []struct {
		input   string
		wantErr string
		check   func(*config) bool
	}{
		{"llq", "", func(c *config) bool {
			return c.min == 15*time.Minute && c.max == 2*time.Hour && c.tsigRequired && c.limit == 256 && c.udp == ":5352" && c.tcp == ":5352" && c.tlsAddr == ""
		}},
		{"llq {\n min 1s\n max 10s\n tsig optional\n limit 5\n udp 127.0.0.1:9\n tcp off\n}", "", func(c *config) bool {
			return c.min == time.Second && c.max == 10*time.Second && !c.tsigRequired && c.limit == 5 && c.udp == "127.0.0.1:9" && c.tcp == ""
		}},
		{"llq extra", "Wrong argument count", nil},
		{"llq {\n min 10m\n max 5m\n}", "above max", nil},
		{"llq {\n min 1.5s\n}", "whole number", nil},
		{"llq {\n tsig maybe\n}", "required or optional", nil},
		{"llq {\n limit 0\n}", "positive", nil},
		{"llq {\n udp nonsense\n}", "HOST:PORT", nil},
		{"llq {\n udp off\n tcp off\n}", "every listener is off", nil},
		{"llq {\n tls :853 /missing/cert.pem /missing/key.pem\n}", "certificate", nil},
		{"llq {\n tls :853\n}", "ADDRESS CERT KEY", nil},
		{"llq {\n limit 3\n limit 4\n}", "more than once", nil},
		{"llq {\n bogus\n}", `unknown property "bogus"`, nil},
		{"llq\nllq", "only be used once", nil},
	}
	for _, tc := range tests {
		c, err := parse(caddy.NewTestController("dns", tc.input))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.input, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: error %v, want one containing %q", tc.input, err, tc.wantErr)
		case tc.check != nil && !tc.check(c):
			t.Errorf("%q: parsed %+v", tc.input, c)
		}
	}
}
