package llq

import (
	"testing"
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
	"github.com/openbtmm/btmm/plugin/pkg/setuptest"
)

func TestParse(t *testing.T) {
	setuptest.Run(t, parse, []setuptest.Case[*config]{
		{Input: "llq", Check: func(t testing.TB, c *config) {
			if !(c.min == 15*time.Minute && c.max == 2*time.Hour && c.tsigRequired && c.limit == 256 && c.addrs == rawdns.Addrs{UDP: ":5352", TCP: ":5352"}) {
				t.Errorf("parsed %+v", c)
			}
		}},
		{Input: "llq {\n min 1s\n max 10s\n tsig optional\n limit 5\n udp 127.0.0.1:9\n tcp off\n}", Check: func(t testing.TB, c *config) {
			if !(c.min == time.Second && c.max == 10*time.Second && !c.tsigRequired && c.limit == 5 && c.addrs == rawdns.Addrs{UDP: "127.0.0.1:9"}) {
				t.Errorf("parsed %+v", c)
			}
		}},
		{Input: "llq extra", WantErr: "Wrong argument count"},
		{Input: "llq {\n min 10m\n max 5m\n}", WantErr: "above max"},
		{Input: "llq {\n min 1.5s\n}", WantErr: "whole number"},
		{Input: "llq {\n tsig maybe\n}", WantErr: "required or optional"},
		{Input: "llq {\n limit 0\n}", WantErr: "positive"},
		{Input: "llq {\n udp nonsense\n}", WantErr: "HOST:PORT"},
		{Input: "llq {\n udp off\n tcp off\n}", WantErr: "every listener is off"},
		{Input: "llq {\n tls :853 /missing/cert.pem /missing/key.pem\n}", WantErr: "certificate"},
		{Input: "llq {\n tls :853\n}", WantErr: "ADDRESS CERT KEY"},
		{Input: "llq {\n limit 3\n limit 4\n}", WantErr: "more than once"},
		{Input: "llq {\n rate 5 7\n}", Check: func(t testing.TB, c *config) {
			if r, b := c.setups.Limit(); r != 5 || b != 7 {
				t.Errorf("rate %v, burst %d", r, b)
			}
		}},
		{Input: "llq", Check: func(t testing.TB, c *config) {
			if r, b := c.setups.Limit(); r != defaultSetupRate || b != defaultSetupBurst {
				t.Errorf("default rate %v, burst %d", r, b)
			}
		}},
		{Input: "llq {\n rate many\n}", WantErr: "requests per second"},
		{Input: "llq {\n rate\n}", WantErr: "Wrong argument count"},
		{Input: "llq {\n bogus\n}", WantErr: `unknown property "bogus"`},
		{Input: "llq\nllq", WantErr: "only be used once"},
	})
}
