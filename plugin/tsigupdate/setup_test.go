package tsigupdate

import (
	"testing"

	"github.com/openbtmm/btmm/plugin/pkg/setuptest"
)

func TestParse(t *testing.T) {
	setuptest.Run(t, parse, []setuptest.Case[*TsigUpdate]{
		{Input: "tsig-update", Check: quotas(defaultMaxRecords, defaultMaxBytes)},
		{Input: "tsig-update {\n}", Check: quotas(defaultMaxRecords, defaultMaxBytes)},
		{Input: "tsig-update {\n max_records 10\n max_bytes 4096\n}", Check: quotas(10, 4096)},
		{Input: "tsig-update {\n max_bytes 4096\n}", Check: quotas(defaultMaxRecords, 4096)},
		{Input: "tsig-update {\n max_records 1\n}", Check: quotas(1, defaultMaxBytes)},

		{Input: "tsig-update members.example.com", WantErr: "Wrong argument count"},
		{Input: "tsig-update {\n max_records\n}", WantErr: "Wrong argument count"},
		{Input: "tsig-update {\n max_records 10 20\n}", WantErr: "Wrong argument count"},
		{Input: "tsig-update {\n quota 10\n}", WantErr: "unknown property"},
		{Input: "tsig-update {\n max_records 10\n max_records 20\n}", WantErr: "more than once"},
		{Input: "tsig-update {\n max_records 0\n}", WantErr: "positive integer"},
		{Input: "tsig-update {\n max_records -1\n}", WantErr: "positive integer"},
		{Input: "tsig-update {\n max_bytes 0\n}", WantErr: "positive integer"},
		{Input: "tsig-update {\n max_bytes 4k\n}", WantErr: "positive integer"},
		{Input: "tsig-update {\n max_records ten\n}", WantErr: "positive integer"},
		{Input: "tsig-update {\n max_records 99999999999999999999\n}", WantErr: "positive integer"},
		{Input: "tsig-update\ntsig-update {\n max_records 10\n}", WantErr: "only be used once"},

		{Input: "tsig-update", Check: rates(defaultRate, defaultBurst)},
		{Input: "tsig-update {\n rate 2\n}", Check: rates(2, 10)},
		{Input: "tsig-update {\n rate 0.5 3\n}", Check: rates(0.5, 3)},
		{Input: "tsig-update {\n rate 0\n}", Check: rates(0, 1)},
		{Input: "tsig-update {\n rate fast\n}", WantErr: "requests per second"},
		{Input: "tsig-update {\n rate -1\n}", WantErr: "requests per second"},
		{Input: "tsig-update {\n rate 5 0\n}", WantErr: "positive integer"},
		{Input: "tsig-update {\n rate\n}", WantErr: "Wrong argument count"},
	})
}

// quotas checks the quotas a block parsed to, and that the handler has a
// clock to date leases by.
func quotas(maxRecords, maxBytes int) func(testing.TB, *TsigUpdate) {
	return func(t testing.TB, u *TsigUpdate) {
		if u.maxRecords != maxRecords || u.maxBytes != maxBytes {
			t.Errorf("max_records %d, max_bytes %d; want %d, %d", u.maxRecords, u.maxBytes, maxRecords, maxBytes)
		}
		if u.now == nil {
			t.Error("no clock")
		}
	}
}

// rates checks the per-key rate a block parsed to.
func rates(perSecond float64, burst int) func(testing.TB, *TsigUpdate) {
	return func(t testing.TB, u *TsigUpdate) {
		if r, b := u.rates.Limit(); u.rates == nil || r != perSecond || b != burst {
			t.Errorf("rate %+v, want %v a second, bursts of %d", u.rates, perSecond, burst)
		}
	}
}
