package dnspush

import (
	"testing"
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/rawdns"
	"github.com/openbtmm/btmm/plugin/pkg/setuptest"
)

func TestParse(t *testing.T) {
	setuptest.Run(t, parse, []setuptest.Case[*config]{
		{Input: "dns-push {\n tcp 127.0.0.1:9\n}", Check: func(t testing.TB, c *config) {
			if !(c.tsigRequired && c.limit == defaultLimit && c.keepalive == defaultKeepalive && c.inactivity == defaultInactivity && c.addrs == rawdns.Addrs{TCP: "127.0.0.1:9"}) {
				t.Errorf("parsed %+v", c)
			}
		}},
		{Input: "dns-push {\n tcp :9\n tsig optional\n limit 5\n keepalive 30s\n inactivity 2m\n}", Check: func(t testing.TB, c *config) {
			if !(!c.tsigRequired && c.limit == 5 && c.keepalive == 30*time.Second && c.inactivity == 2*time.Minute) {
				t.Errorf("parsed %+v", c)
			}
		}},
		{Input: "dns-push", WantErr: "needs a listener"},
		{Input: "dns-push {\n udp :9\n}", WantErr: `unknown property "udp"`},
		{Input: "dns-push {\n tcp :9\n keepalive 5s\n}", WantErr: "at least 10s"},
		{Input: "dns-push {\n tcp :9\n inactivity soon\n}", WantErr: "duration"},
		{Input: "dns-push {\n tcp :9\n tsig maybe\n}", WantErr: "required or optional"},
		{Input: "dns-push {\n tcp :9\n limit -1\n}", WantErr: "positive"},
		{Input: "dns-push {\n tls :853 /missing/cert.pem /missing/key.pem\n}", WantErr: "certificate"},
		{Input: "dns-push extra", WantErr: "Wrong argument count"},
	})
}
