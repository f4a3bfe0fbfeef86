// Package updateload drives a DNS server with TSIG-signed UPDATEs, the
// same load for every server it is pointed at: over UDP, each UPDATE adds
// one A record at a new name under its signing key's own domain, keys in
// turn, from a number of concurrent senders that each wait for the answer
// before sending again. It reports the rate and the latencies.
package updateload

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
)

// Config is one run.
type Config struct {
	Addr string // the server's UPDATE address, host:port
	Zone string // the zone section of every UPDATE
	// Keys sign in turn; each UPDATE adds a name under its key's name.
	Keys        []keyfile.Key
	Concurrency int           // senders (default 1)
	Duration    time.Duration // stop after this long...
	Max         int           // ...or this many UPDATEs, whichever comes first (0: no limit)
	// Prefix starts every added name's first label, so that runs against
	// the same zone add names of their own.
	Prefix  string
	Timeout time.Duration // per UPDATE (default 2s)
	// Rate, if set, paces the senders to this many UPDATEs per second in
	// all: a background load rather than as many as the server takes.
	Rate float64
	// Stop, if not nil, ends the run when closed.
	Stop <-chan struct{}
}

// Result is what a run measured over the UPDATEs that succeeded.
type Result struct {
	Updates  int // answered NOERROR, with a valid TSIG
	Failures int // any other answer, or none in time
	Elapsed  time.Duration
	P50, P99 time.Duration
	// FirstError describes the first failure, for the report.
	FirstError string
}

// Rate is the successful UPDATEs per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Updates) / r.Elapsed.Seconds()
}

func (r Result) String() string {
	return fmt.Sprintf("%.0f updates/s, p50 %.2f ms, p99 %.2f ms (%d updates, %d failures)",
		r.Rate(), ms(r.P50), ms(r.P99), r.Updates, r.Failures)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Run sends UPDATEs as cfg says and returns what it measured.
func Run(cfg Config) (Result, error) {
	if len(cfg.Keys) == 0 {
		return Result{}, errors.New("updateload: no keys")
	}
	if cfg.Duration <= 0 && cfg.Max <= 0 && cfg.Stop == nil {
		return Result{}, errors.New("updateload: neither a duration, a count nor a stop")
	}
	cfg.Zone = dns.Fqdn(cfg.Zone)
	if cfg.Concurrency < 0 || cfg.Rate < 0 {
		return Result{}, errors.New("updateload: negative concurrency or rate")
	}
	cfg.Concurrency = max(cfg.Concurrency, 1)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	secrets := make(map[string]string, len(cfg.Keys))
	for _, k := range cfg.Keys {
		secrets[k.Name] = k.Secret
	}
	var (
		next     atomic.Int64 // numbers the UPDATEs across senders
		mu       sync.Mutex
		lat      []time.Duration
		failures int
		first    string
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(cfg.Duration)
	start := time.Now()
	for range cfg.Concurrency {
		wg.Go(func() {
			c := &dns.Client{Net: "udp", Timeout: cfg.Timeout, TsigSecret: secrets}
			conn, err := c.Dial(cfg.Addr)
			if err != nil {
				mu.Lock()
				failures++
				first = cmpOr(first, err.Error())
				mu.Unlock()
				return
			}
			defer conn.Close()
			var mine []time.Duration
			fails := 0
			var every time.Duration
			if cfg.Rate > 0 {
				every = time.Duration(float64(cfg.Concurrency) / cfg.Rate * float64(time.Second))
			}
			slot := time.Now()
		send:
			for {
				if every > 0 {
					slot = slot.Add(every)
					time.Sleep(time.Until(slot))
				}
				i := int(next.Add(1)) - 1
				if cfg.Max > 0 && i >= cfg.Max || cfg.Duration > 0 && time.Now().After(deadline) {
					break
				}
				select {
				case <-cfg.Stop:
					break send
				default:
				}
				k := cfg.Keys[i%len(cfg.Keys)]
				name := fmt.Sprintf("%s%d.%s", cfg.Prefix, i, k.Name)
				m := new(dns.Msg).SetUpdate(cfg.Zone)
				m.Insert([]dns.RR{&dns.A{
					Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(198, 18, byte(i>>8), byte(i)),
				}})
				m.SetTsig(k.Name, k.Algorithm, 300, time.Now().Unix())
				t0 := time.Now()
				// A fresh dns.Conn over the same socket per exchange: miekg/dns
				// would take a second request on one dns.Conn for a response.
				r, _, err := c.ExchangeWithConn(m, &dns.Conn{Conn: conn.Conn, TsigSecret: secrets})
				d := time.Since(t0)
				if err == nil && r.Rcode != dns.RcodeSuccess {
					err = fmt.Errorf("UPDATE %s: %s", name, dns.RcodeToString[r.Rcode])
				}
				if err != nil {
					fails++
					mu.Lock()
					first = cmpOr(first, err.Error())
					mu.Unlock()
					if errors.Is(err, net.ErrClosed) {
						break
					}
					continue
				}
				mine = append(mine, d)
			}
			mu.Lock()
			lat = append(lat, mine...)
			failures += fails
			mu.Unlock()
		})
	}
	wg.Wait()
	res := Result{Updates: len(lat), Failures: failures, Elapsed: time.Since(start), FirstError: first}
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50 = lat[len(lat)/2]
		res.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return res, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
