package bench

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
	"github.com/openbtmm/btmm/test/bench/updateload"
	"github.com/openbtmm/btmm/test/coredns"
)

// BenchmarkLLQEventLatency measures, through bin/coredns over loopback,
// the time from an UPDATE's acknowledgement to the arrival of the event it
// causes, with 1 000 and 100 000 other LLQs live (on other names), and
// reports its median and 99th percentile ("ack-p50-µs"). The server sends
// the event as the change commits, before the UPDATE's reply, so the event
// often arrives first: that counts as 0. The time from sending the UPDATE
// to the event ("send-p50-µs") is reported beside it.
//
// The last case adds a background load of 5 000 UPDATEs per second from
// 100 other users (new names, nobody's LLQs), so that the events ride on
// the store's group commits.
func BenchmarkLLQEventLatency(b *testing.B) {
	for _, tc := range []struct{ n, rate int }{{1_000, 0}, {100_000, 0}, {100_000, 5_000}} {
		name := fmt.Sprintf("llqs=%d", tc.n)
		if tc.rate > 0 {
			name += fmt.Sprintf("/updates=%d/s", tc.rate)
		}
		n := tc.n
		b.Run(name, func(b *testing.B) {
			users := userKeys(100)
			s := startLLQServer(b, n, users)
			if tc.rate > 0 {
				stop := make(chan struct{})
				done := make(chan updateload.Result, 1)
				go func() {
					res, _ := updateload.Run(updateload.Config{Addr: s.UpdateAddr(), Zone: zone, Keys: users, Concurrency: 16, Rate: float64(tc.rate), Stop: stop, Prefix: "bg"})
					done <- res
				}()
				b.Cleanup(func() {
					close(stop)
					res := <-done
					b.Logf("background: %v", res)
				})
			}
			for i := range n / 1000 {
				holdLLQs(b, s.LLQAddr(), 1000, func(j int) string { return fmt.Sprintf("h%d.u%d.members.example.com.", j, i) })
			}
			probeName := "probe.alice.members.example.com."
			probe := holdLLQs(b, s.LLQAddr(), 1, func(int) string { return probeName })
			b.ResetTimer()
			lat, fromSend := eventLatencies(b, probe, probeName, s.UpdateAddr(), b.N)
			b.StopTimer()
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "ack-p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "ack-p99-µs")
			b.ReportMetric(float64(fromSend[len(fromSend)/2].Microseconds()), "send-p50-µs")
			b.ReportMetric(float64(fromSend[len(fromSend)*99/100].Microseconds()), "send-p99-µs")
		})
	}
}

// eventLatencies sends n UPDATEs, one after the other, each replacing the
// A record at probeName (signed with the probe user's key) to updateAddr,
// and waits for the event each causes on probe, an LLQ held on probeName
// (acknowledging it, as a client does). It returns, sorted, the times from
// each UPDATE's acknowledgement to its event (0 when the event came
// first: the server sends it as the change commits) and from its sending.
func eventLatencies(tb testing.TB, probe net.Conn, probeName, updateAddr string, n int) (lat, fromSend []time.Duration) {
	arrived := make(chan time.Time, 16)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, err := probe.Read(buf)
			if err != nil {
				return
			}
			at := time.Now()
			ev := new(dns.Msg)
			if ev.Unpack(buf[:n]) != nil || !ev.Response {
				continue
			}
			ack := new(dns.Msg)
			ack.Id, ack.Response, ack.Question = ev.Id, true, ev.Question
			opts, _ := llqopt.From(ev)
			llqopt.Set(ack, 1232, opts...)
			if b, err := ack.Pack(); err == nil {
				probe.Write(b)
			}
			arrived <- at
		}
	}()
	return updateLatencies(tb, arrived, probeName, updateAddr, n)
}

// updateLatencies sends n UPDATEs, one after the other, each replacing the
// A record at probeName, and waits for each change to arrive (a time on
// arrived). It returns, sorted, the times from each acknowledgement to
// the arrival (0 when the change came first) and from each sending.
func updateLatencies(tb testing.TB, arrived <-chan time.Time, probeName, updateAddr string, n int) (lat, fromSend []time.Duration) {
	c := &dns.Client{Timeout: 5 * time.Second, TsigSecret: map[string]string{keyName: secret}}
	for i := range n {
		rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A 192.0.2.%d", probeName, i%250+1))
		m := new(dns.Msg).SetUpdate("members.example.com.")
		m.RemoveRRset([]dns.RR{rr})
		m.Insert([]dns.RR{rr})
		m.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
		sent := time.Now()
		r, _, err := c.Exchange(m, updateAddr)
		acked := time.Now()
		if err != nil || r.Rcode != dns.RcodeSuccess {
			tb.Fatalf("update: %v %v", err, r)
		}
		// One change per update: the A that went, the A that came.
		select {
		case at := <-arrived:
			lat = append(lat, max(at.Sub(acked), 0))
			fromSend = append(fromSend, at.Sub(sent))
		case <-time.After(5 * time.Second):
			tb.Fatalf("nothing arrived for update %d", i)
		}
	}
	slices.Sort(lat)
	slices.Sort(fromSend)
	return lat, fromSend
}

func startLLQServer(b *testing.B, limit int, more []keyfile.Key) *coredns.Server {
	return startBenchServer(b, "store members.db", limit+10, more)
}

// holdLLQs sets up n unsigned LLQs (type A) from one UDP socket, a window
// of them at a time, and returns the socket.
func holdLLQs(b testing.TB, addr string, n int, name func(int) string) net.Conn {
	c, err := net.Dial("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	const window = 50
	buf := make([]byte, 65535)
	// Replies are matched by message ID, so the IDs in flight must differ.
	var nextID uint16
	newID := func() uint16 { nextID++; return nextID }
	exchange := func(reqs []*dns.Msg) []*dns.Msg {
		replies := make(map[uint16]*dns.Msg)
		for try := 0; try < 5 && len(replies) < len(reqs); try++ {
			for _, m := range reqs {
				if replies[m.Id] == nil {
					p, _ := m.Pack()
					c.Write(p)
				}
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			for len(replies) < len(reqs) {
				k, err := c.Read(buf)
				if err != nil {
					break
				}
				r := new(dns.Msg)
				if r.Unpack(buf[:k]) == nil {
					replies[r.Id] = r
				}
			}
		}
		out := make([]*dns.Msg, len(reqs))
		for i, m := range reqs {
			if out[i] = replies[m.Id]; out[i] == nil {
				b.Fatalf("no reply to LLQ request %d after 5 tries", i)
			}
		}
		return out
	}
	for start := 0; start < n; start += window {
		var setups []*dns.Msg
		for j := start; j < min(start+window, n); j++ {
			m := new(dns.Msg).SetQuestion(name(j), dns.TypeA)
			m.Id = newID()
			llqopt.Set(m, 1232, llqopt.Option{Opcode: llqopt.Setup, Lease: 7200})
			setups = append(setups, m)
		}
		var responses []*dns.Msg
		for i, ch := range exchange(setups) {
			opts, _ := llqopt.From(ch)
			if len(opts) != 1 || opts[0].Error != llqopt.NoError {
				b.Fatalf("challenge: %v", ch)
			}
			m := new(dns.Msg).SetQuestion(setups[i].Question[0].Name, dns.TypeA)
			m.Id = newID()
			llqopt.Set(m, 1232, llqopt.Option{Opcode: llqopt.Setup, ID: opts[0].ID, Lease: opts[0].Lease})
			responses = append(responses, m)
		}
		for i, ack := range exchange(responses) {
			if opts, _ := llqopt.From(ack); len(opts) != 1 || opts[0].Error != llqopt.NoError {
				b.Fatalf("ACK to %v:\n%v", responses[i], ack)
			}
		}
	}
	c.SetReadDeadline(time.Time{})
	return c
}
