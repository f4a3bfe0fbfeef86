package tsigupdate

import (
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

func TestParse(t *testing.T) {
	tests := []struct {
		input      string
		wantErr    string // a part of the error, or "" for none
		maxRecords int
		maxBytes   int
	}{
		{"tsig-update", "", defaultMaxRecords, defaultMaxBytes},
		{"tsig-update {\n}", "", defaultMaxRecords, defaultMaxBytes},
		{"tsig-update {\n max_records 10\n max_bytes 4096\n}", "", 10, 4096},
		{"tsig-update {\n max_bytes 4096\n}", "", defaultMaxRecords, 4096},
		{"tsig-update {\n max_records 1\n}", "", 1, defaultMaxBytes},

		{"tsig-update members.example.com", "Wrong argument count", 0, 0},
		{"tsig-update {\n max_records\n}", "Wrong argument count", 0, 0},
		{"tsig-update {\n max_records 10 20\n}", "Wrong argument count", 0, 0},
		{"tsig-update {\n quota 10\n}", "unknown property", 0, 0},
		{"tsig-update {\n max_records 10\n max_records 20\n}", "more than once", 0, 0},
		{"tsig-update {\n max_records 0\n}", "positive integer", 0, 0},
		{"tsig-update {\n max_records -1\n}", "positive integer", 0, 0},
		{"tsig-update {\n max_bytes 0\n}", "positive integer", 0, 0},
		{"tsig-update {\n max_bytes 4k\n}", "positive integer", 0, 0},
		{"tsig-update {\n max_records ten\n}", "positive integer", 0, 0},
		{"tsig-update {\n max_records 99999999999999999999\n}", "positive integer", 0, 0},
		{"tsig-update\ntsig-update {\n max_records 10\n}", "only be used once", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.input, func(t *testing.T) {
			u, err := parse(caddy.NewTestController("dns", tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if u.maxRecords != tc.maxRecords || u.maxBytes != tc.maxBytes {
				t.Errorf("max_records %d, max_bytes %d; want %d, %d", u.maxRecords, u.maxBytes, tc.maxRecords, tc.maxBytes)
			}
			if u.now == nil {
				t.Error("no clock")
			}
		})
	}
}
