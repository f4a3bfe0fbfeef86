package llq

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
)

// BenchmarkMemoryPerLLQ reports the heap that 100 000 and 1 000 000
// established LLQs hold, per LLQ and in all: their state, index entries
// and names, set up through the same code as over the wire (from many
// addresses, 100 names each).
func BenchmarkMemoryPerLLQ(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("llqs=%d", n), func(b *testing.B) { memoryPerLLQ(b, n) })
	}
}

func memoryPerLLQ(b *testing.B, n int) {
	for range b.N {
		f := newFixture(b, false, n)
		p := f.s.policy.Load()
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("h%d.u%d.members.example.com.", i%100, i/100)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range n {
			from := origin{addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), 1}), uint16(1024+i%100))}
			req := &request{from: from}
			q := qkey{name: dns.CanonicalName(names[i]), qtype: dns.TypeAAAA}
			ch := f.s.setup(req, p, q, llqopt.Option{Opcode: llqopt.Setup, Lease: 3600})
			if ack := f.s.challengeResponse(req, q, ch); ack.Error != llqopt.NoError {
				b.Fatalf("LLQ %d: %+v", i, ack)
			}
		}
		names = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		f.s.mu.Lock()
		live := len(f.s.t.byID)
		f.s.mu.Unlock()
		if live != n {
			b.Fatalf("%d LLQs live, want %d", live, n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "bytes/llq")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB")
	}
}
