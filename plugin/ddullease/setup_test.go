package ddullease

import (
	"testing"
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/setuptest"
)

func TestParse(t *testing.T) {
	const h = time.Hour
	const m = time.Minute
	setuptest.Run(t, parse, []setuptest.Case[*DdulLease]{
		// RFC 6281's BTMM bounds and RFC 9664's KEY-LEASE cap.
		{Input: "ddul-lease", Check: bounds(30*m, 2*h, 90*m, 168*h)},
		{Input: "ddul-lease {\n}", Check: bounds(30*m, 2*h, 90*m, 168*h)},
		{Input: "ddul-lease {\n min 1h\n max 4h\n default 2h\n key_max 24h\n}", Check: bounds(h, 4*h, 2*h, 24*h)},
		{Input: "ddul-lease {\n min 30s\n max 1h30m15s\n default 1m\n}", Check: bounds(30*time.Second, 90*m+15*time.Second, m, 168*h)},
		{Input: "ddul-lease {\n min 1h\n max 1h\n}", Check: bounds(h, h, h, 168*h)},
		{Input: "ddul-lease {\n key_max 30m\n}", Check: bounds(30*m, 2*h, 90*m, 30*m)},
		// A default that was not given follows the bounds into them.
		{Input: "ddul-lease {\n min 3h\n max 4h\n}", Check: bounds(3*h, 4*h, 3*h, 168*h)},
		{Input: "ddul-lease {\n max 1h\n}", Check: bounds(30*m, h, h, 168*h)},
		// The longest lease the option carries.
		{Input: "ddul-lease {\n max 2147483647s\n key_max 2147483647s\n}", Check: bounds(30*m, 2147483647*time.Second, 90*m, 2147483647*time.Second)},

		{Input: "ddul-lease {\n min 3h\n}", WantErr: "above max"},
		{Input: "ddul-lease {\n min 2h\n max 1h\n default 1h\n}", WantErr: "above max"},
		{Input: "ddul-lease {\n default 3h\n}", WantErr: "outside"},
		{Input: "ddul-lease {\n default 10m\n}", WantErr: "outside"},
		{Input: "ddul-lease {\n min 1h\n max 2h\n default 30m\n}", WantErr: "outside"},
		{Input: "ddul-lease {\n key_max 10m\n}", WantErr: "below min"},
		{Input: "ddul-lease {\n min 1.5s\n}", WantErr: "whole number of seconds"},
		{Input: "ddul-lease {\n min 500ms\n}", WantErr: "whole number of seconds"},
		{Input: "ddul-lease {\n max 2h0m0.5s\n}", WantErr: "whole number of seconds"},
		{Input: "ddul-lease {\n min 0s\n}", WantErr: "whole number of seconds"},
		{Input: "ddul-lease {\n min -30m\n}", WantErr: "whole number of seconds"},
		{Input: "ddul-lease {\n min 1800\n}", WantErr: "whole number of seconds"},
		{Input: "ddul-lease {\n key_max 7d\n}", WantErr: "whole number of seconds"},
		{Input: "ddul-lease {\n max 2147483648s\n}", WantErr: "longest lease"},
		{Input: "ddul-lease {\n key_max 1000000h\n}", WantErr: "longest lease"},
		{Input: "ddul-lease {\n lease 1h\n}", WantErr: "unknown property"},
		// A misspelt property is named as such, whatever follows it.
		{Input: "ddul-lease {\n keymax 7d\n}", WantErr: "unknown property"},
		{Input: "ddul-lease {\n maximum\n}", WantErr: "unknown property"},
		{Input: "ddul-lease {\n min 30m\n min 1h\n}", WantErr: "more than once"},
		{Input: "ddul-lease 90m", WantErr: "Wrong argument count"},
		{Input: "ddul-lease {\n min\n}", WantErr: "Wrong argument count"},
		{Input: "ddul-lease {\n min 30m 1h\n}", WantErr: "Wrong argument count"},
		{Input: "ddul-lease\nddul-lease {\n min 1h\n}", WantErr: "only be used once"},
	})
}

// bounds checks the four bounds a block parsed to.
func bounds(min, max, def, keyMax time.Duration) func(testing.TB, *DdulLease) {
	return func(t testing.TB, d *DdulLease) {
		if d.min != min || d.max != max || d.def != def || d.keyMax != keyMax {
			t.Errorf("min %v max %v default %v key_max %v; want %v %v %v %v",
				d.min, d.max, d.def, d.keyMax, min, max, def, keyMax)
		}
	}
}
