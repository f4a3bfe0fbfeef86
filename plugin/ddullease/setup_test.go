package ddullease

import (
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
)

func TestParse(t *testing.T) {
	const h = time.Hour
	const m = time.Minute
	tests := []struct {
		input                 string
		wantErr               string // a part of the error, or "" for none
		min, max, def, keyMax time.Duration
	}{
		// RFC 6281's BTMM bounds and RFC 9664's KEY-LEASE cap.
		{input: "ddul-lease", min: 30 * m, max: 2 * h, def: 90 * m, keyMax: 168 * h},
		{input: "ddul-lease {\n}", min: 30 * m, max: 2 * h, def: 90 * m, keyMax: 168 * h},
		{input: "ddul-lease {\n min 1h\n max 4h\n default 2h\n key_max 24h\n}", min: h, max: 4 * h, def: 2 * h, keyMax: 24 * h},
		{input: "ddul-lease {\n min 30s\n max 1h30m15s\n default 1m\n}", min: 30 * time.Second, max: 90*m + 15*time.Second, def: m, keyMax: 168 * h},
		{input: "ddul-lease {\n min 1h\n max 1h\n}", min: h, max: h, def: h, keyMax: 168 * h},
		{input: "ddul-lease {\n key_max 30m\n}", min: 30 * m, max: 2 * h, def: 90 * m, keyMax: 30 * m},
		// A default that was not given follows the bounds into them.
		{input: "ddul-lease {\n min 3h\n max 4h\n}", min: 3 * h, max: 4 * h, def: 3 * h, keyMax: 168 * h},
		{input: "ddul-lease {\n max 1h\n}", min: 30 * m, max: h, def: h, keyMax: 168 * h},
		// The longest lease the option carries.
		{input: "ddul-lease {\n max 2147483647s\n key_max 2147483647s\n}", min: 30 * m, max: 2147483647 * time.Second, def: 90 * m, keyMax: 2147483647 * time.Second},

		{input: "ddul-lease {\n min 3h\n}", wantErr: "above max"},
		{input: "ddul-lease {\n min 2h\n max 1h\n default 1h\n}", wantErr: "above max"},
		{input: "ddul-lease {\n default 3h\n}", wantErr: "outside"},
		{input: "ddul-lease {\n default 10m\n}", wantErr: "outside"},
		{input: "ddul-lease {\n min 1h\n max 2h\n default 30m\n}", wantErr: "outside"},
		{input: "ddul-lease {\n key_max 10m\n}", wantErr: "below min"},
		{input: "ddul-lease {\n min 1.5s\n}", wantErr: "whole number of seconds"},
		{input: "ddul-lease {\n min 500ms\n}", wantErr: "whole number of seconds"},
		{input: "ddul-lease {\n max 2h0m0.5s\n}", wantErr: "whole number of seconds"},
		{input: "ddul-lease {\n min 0s\n}", wantErr: "whole number of seconds"},
		{input: "ddul-lease {\n min -30m\n}", wantErr: "whole number of seconds"},
		{input: "ddul-lease {\n min 1800\n}", wantErr: "whole number of seconds"},
		{input: "ddul-lease {\n key_max 7d\n}", wantErr: "whole number of seconds"},
		{input: "ddul-lease {\n max 2147483648s\n}", wantErr: "longest lease"},
		{input: "ddul-lease {\n key_max 1000000h\n}", wantErr: "longest lease"},
		{input: "ddul-lease {\n lease 1h\n}", wantErr: "unknown property"},
		// A misspelt property is named as such, whatever follows it.
		{input: "ddul-lease {\n keymax 7d\n}", wantErr: "unknown property"},
		{input: "ddul-lease {\n maximum\n}", wantErr: "unknown property"},
		{input: "ddul-lease {\n min 30m\n min 1h\n}", wantErr: "more than once"},
		{input: "ddul-lease 90m", wantErr: "Wrong argument count"},
		{input: "ddul-lease {\n min\n}", wantErr: "Wrong argument count"},
		{input: "ddul-lease {\n min 30m 1h\n}", wantErr: "Wrong argument count"},
		{input: "ddul-lease\nddul-lease {\n min 1h\n}", wantErr: "only be used once"},
	}
	for _, tc := range tests {
		t.Run(tc.input, func(t *testing.T) {
			d, err := parse(caddy.NewTestController("dns", tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if d.min != tc.min || d.max != tc.max || d.def != tc.def || d.keyMax != tc.keyMax {
				t.Errorf("min %v max %v default %v key_max %v; want %v %v %v %v",
					d.min, d.max, d.def, d.keyMax, tc.min, tc.max, tc.def, tc.keyMax)
			}
		})
	}
}
