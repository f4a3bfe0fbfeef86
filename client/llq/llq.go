// Package llq is a client for DNS Long-Lived Queries (RFC 8764).
//
// A Client holds one socket (UDP) or one connection (TCP, or TCP with TLS)
// to one LLQ server and any number of LLQs on it. Setup establishes an LLQ
// and returns the current answers; from then on the server pushes changes,
// which the client acknowledges and delivers on Events. The caller keeps
// each LLQ alive with Refresh (RFC 8764 §7 suggests at 80 % of the lease;
// Expires says when) and ends it with Cancel.
//
// Over UDP, setup is the four-way handshake of RFC 8764 §5.2 (request,
// challenge, challenge response, ACK+Answers) with the retransmissions of
// §5.1: the first resend after 2 s, the second after 4 s more, then 8 s
// of listening before giving up with ErrTimeout. Refreshes and cancels are
// retransmitted on the same schedule. A caller's context can cut any of
// this short.
//
// Over TCP and TLS, setup is the two-message exchange that Apple shipped
// (request, then ACK+Answers with the server's LLQ-ID), nothing is
// retransmitted, and events arrive on the same connection. If
// Config.UDPPortHint is set, it goes in the LLQ-ERROR field of every setup
// and refresh sent on the connection, as Apple's clients do.
//
// With a TSIG key every request and acknowledgement is signed, and every
// reply and event must carry a valid TSIG of that key; anything else is
// treated as never received. The one exception is a NOTAUTH reply, whose
// TSIG error (BADKEY, BADSIG: unsigned; BADTIME: signed) is returned as a
// *SetupError. Each message is signed on its own (request MAC empty) and
// put on the wire by this package, never through a dns.Conn, which would
// chain the MACs of successive messages.
//
// Events for all LLQs of a client arrive on one channel in the order the
// server sent them. A goroutine that calls Setup and then reads Events
// sees the setup's answers before any event that follows them.
package llq

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/llqopt"
)

// DefaultLease is the lease asked for when Config.Lease is zero: what
// Apple's clients ask for, and RFC 6281's maximum.
const DefaultLease = 2 * time.Hour

const (
	defaultEventBuffer = 64
	ednsSize           = 1232             // the UDP payload size in our OPT RRs
	tsigFudge          = 300              // seconds, RFC 8945 §10's recommendation
	writeTimeout       = 10 * time.Second // for one message on a TCP connection
	eventMemory        = 2 * time.Minute  // how long an acknowledged event is remembered
	maxEventMemory     = 4096             // how many acknowledged events are remembered
	maxReadErrors      = 10               // consecutive UDP read errors before the client stops
)

// Config says how to reach an LLQ server. Server is required; the zero
// value of every other field is usable.
type Config struct {
	// Server is the LLQ server's host:port, found with the SRV records of
	// RFC 8764 §4 (port 5352 or 53, usually).
	Server string
	// Network is "udp" (the default), "tcp" or "tcp-tls".
	Network string
	// TLS configures "tcp-tls"; nil means the default configuration for
	// Server's host name.
	TLS *tls.Config
	// LocalAddr, if set, is the local address to bind, e.g. ":5350" for a
	// UDP port that has a NAT-PMP mapping (RFC 8764 §9: events come to the
	// setup's source port, which a NAT must keep open for the lease).
	LocalAddr string
	// Key, if set, signs every message and must have signed every reply.
	Key *keyfile.Key
	// Lease is the lease asked for in a setup: 0 means DefaultLease. The
	// server decides; LLQ.Lease tells what it granted.
	Lease time.Duration
	// UDPPortHint, for "tcp" and "tcp-tls", is put in the LLQ-ERROR field
	// of every setup and refresh (cancels included): Apple's way of telling
	// the server where to send events by UDP. 0 sends none. It is ignored
	// over UDP, where LLQ-ERROR is always 0.
	UDPPortHint uint16
	// UnsignedAcks, when a Key is set, leaves event acknowledgements
	// unsigned, as Apple's clients send them. By default they are signed
	// like requests: a new TSIG with an empty request MAC.
	UnsignedAcks bool
	// EventBuffer is the capacity of the Events channel; 0 means 64. An
	// event that finds the channel full is acknowledged, then dropped and
	// counted (see Client.Dropped).
	EventBuffer int
	// Logf, if set, receives the client's diagnostics.
	Logf func(format string, args ...any)

	// retry is the retransmission schedule: for UDP, the wait after each
	// transmission; for TCP, its sum is the time to wait for a reply.
	// Tests shorten it; nil means RFC 8764 §5.1's.
	retry []time.Duration
}

// Errors. Errors from the server's replies are *SetupError.
var (
	// ErrTimeout means the server sent no acceptable reply in time: over
	// UDP, after the three transmissions of RFC 8764 §5.1. The RFC calls
	// such a server down: retry the setup at most once an hour, and poll
	// meanwhile.
	ErrTimeout = errors.New("llq: no reply from the server")
	// ErrNotLLQ means a reply had no LLQ option: the server does not do
	// LLQ (RFC 8764 §5.2.3 allows polling, at most every 15 minutes).
	ErrNotLLQ = errors.New("llq: the reply has no LLQ option")
	// ErrProtocol means a reply broke the protocol (wrong opcode or ID).
	ErrProtocol = errors.New("llq: unexpected reply")
	// ErrExists is returned by Setup for an LLQ that is already live on
	// this client: RFC 8764 §5.2 forbids two identical LLQs from one source.
	ErrExists = errors.New("llq: an LLQ for this name and type is live")
	// ErrCanceled is returned by Refresh for an LLQ that was canceled or
	// that the server no longer knows (NO-SUCH-LLQ): set it up again.
	ErrCanceled = errors.New("llq: canceled")
	// ErrClosed is what requests return, and Err reports, after Close.
	ErrClosed = errors.New("llq: client closed")
)

// SetupError is an error answer from the server to a setup, refresh or
// cancel. Use errors.As to get it.
type SetupError struct {
	// Op is the request's opcode: llqopt.Setup, or llqopt.Refresh (a
	// cancel is a refresh with lease 0).
	Op llqopt.Opcode
	// Rcode is the reply's RCODE, dns.RcodeSuccess if the error is only in
	// LLQ-ERROR.
	Rcode int
	// TSIGError is the TSIG error of a NOTAUTH reply: dns.RcodeBadKey,
	// dns.RcodeBadSig or dns.RcodeBadTime. BADKEY and BADSIG replies are
	// unsigned, so not authenticated.
	TSIGError uint16
	// LLQError is the reply's LLQ-ERROR: SERV-FULL (retry after Lease
	// seconds), STATIC (never poll, RFC 8764 §5.2.3), NO-SUCH-LLQ (to a
	// refresh: set up again), FORMAT-ERR, BAD-VERS, UNKNOWN-ERR.
	LLQError llqopt.Error
	// Lease is the reply's LLQ-LEASE: for SERV-FULL, the seconds to wait
	// before asking again.
	Lease uint32
}

func (e *SetupError) Error() string {
	var why []string
	if e.Rcode != dns.RcodeSuccess {
		why = append(why, "rcode "+rcodeString(e.Rcode))
	}
	if e.TSIGError != 0 {
		why = append(why, "TSIG error "+rcodeString(int(e.TSIGError)))
	}
	if e.LLQError != llqopt.NoError {
		why = append(why, e.LLQError.String())
	}
	if e.LLQError == llqopt.ServFull {
		why = append(why, fmt.Sprintf("retry after %d s", e.Lease))
	}
	return fmt.Sprintf("llq: %v failed: %s", e.Op, strings.Join(why, ", "))
}

func rcodeString(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rcode)
}

// RetryAfter is how long to wait before asking again after SERV-FULL, and
// 0 for every other error.
func (e *SetupError) RetryAfter() time.Duration {
	if e.LLQError != llqopt.ServFull {
		return 0
	}
	return time.Duration(e.Lease) * time.Second
}

// Event is a change pushed by the server for one LLQ, already acknowledged.
type Event struct {
	ID    uint64 // the LLQ's ID
	Name  string // the LLQ's question
	Qtype uint16
	// Added holds the records that now answer the LLQ, with the TTLs the
	// server sent (which RFC 8764 §5.3 says to ignore while the LLQ lives).
	Added []dns.RR
	// Removed holds the records that no longer answer it. They arrived
	// with TTL 0xFFFFFFFF (llqopt.RemoveTTL, RFC 8764 §6.2); here their
	// TTL is 0, so that nothing caches them by mistake.
	Removed []dns.RR
}

// Client is one socket or connection to one LLQ server, with the LLQs set
// up on it. Its methods are safe for concurrent use.
type Client struct {
	cfg       Config
	key       *keyfile.Key // normalized, nil if none
	lease     uint32       // seconds, asked in setups
	stream    bool         // TCP or TLS
	tr        transport
	logf      func(format string, args ...any)
	events    chan Event
	done      chan struct{} // closed when the reader stops
	dropped   atomic.Uint64
	closeOnce sync.Once

	// seen holds the keys of the events acknowledged lately, with the time
	// each was first seen; only handle (the reader) touches it.
	seen map[uint64]time.Time

	mu        sync.Mutex // guards following
	pending   map[uint16]*pending
	llqs      map[uint64]*LLQ   // by LLQ-ID: established, or challenged
	questions map[question]*LLQ // by question: live, or being set up
	closing   bool
	err       error // why the reader stopped
}

// question is the key of an LLQ on a client.
type question struct {
	name  string // lowercase, fully qualified
	qtype uint16
}

// Dial opens the socket or connection that cfg describes and starts the
// client's reader. Close it when done.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Server == "" {
		return nil, errors.New("llq: no server")
	}
	lease := cfg.Lease
	if lease == 0 {
		lease = DefaultLease
	}
	if lease < time.Second || lease/time.Second > math.MaxUint32 {
		return nil, fmt.Errorf("llq: lease %v out of range", cfg.Lease)
	}
	var key *keyfile.Key
	if cfg.Key != nil {
		k, err := normalizeKey(*cfg.Key)
		if err != nil {
			return nil, err
		}
		key = &k
	}
	var (
		tr     transport
		err    error
		stream bool
	)
	switch cfg.Network {
	case "", "udp":
		tr, err = dialUDP(ctx, cfg.Server, cfg.LocalAddr)
	case "tcp", "tcp-tls":
		stream = true
		tr, err = dialStream(ctx, cfg.Network, cfg.Server, cfg.LocalAddr, cfg.TLS)
	default:
		return nil, fmt.Errorf("llq: unknown network %q", cfg.Network)
	}
	if err != nil {
		return nil, err
	}
	c := newClient(cfg, key, uint32(lease/time.Second), stream, tr)
	go c.read()
	return c, nil
}

// newClient makes a client on tr without starting its reader.
func newClient(cfg Config, key *keyfile.Key, lease uint32, stream bool, tr transport) *Client {
	if cfg.retry == nil {
		cfg.retry = []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second}
	}
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = defaultEventBuffer
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Client{
		cfg:       cfg,
		key:       key,
		lease:     lease,
		stream:    stream,
		tr:        tr,
		logf:      logf,
		events:    make(chan Event, cfg.EventBuffer),
		done:      make(chan struct{}),
		seen:      make(map[uint64]time.Time),
		pending:   make(map[uint16]*pending),
		llqs:      make(map[uint64]*LLQ),
		questions: make(map[question]*LLQ),
	}
}

func normalizeKey(k keyfile.Key) (keyfile.Key, error) {
	k.Name = dns.CanonicalName(k.Name)
	k.Algorithm = dns.CanonicalName(k.Algorithm)
	if _, ok := dns.IsDomainName(k.Name); !ok || k.Name == "." {
		return keyfile.Key{}, fmt.Errorf("llq: bad TSIG key name %q", k.Name)
	}
	switch k.Algorithm {
	case dns.HmacMD5, dns.HmacSHA1, dns.HmacSHA224, dns.HmacSHA256, dns.HmacSHA384, dns.HmacSHA512:
	default:
		return keyfile.Key{}, fmt.Errorf("llq: unknown TSIG algorithm %q", k.Algorithm)
	}
	if b, err := base64.StdEncoding.DecodeString(k.Secret); err != nil || len(b) == 0 {
		return keyfile.Key{}, fmt.Errorf("llq: TSIG key %s: bad secret", k.Name)
	}
	return k, nil
}

// Events returns the channel on which the client delivers the events of
// all its LLQs, each once, after acknowledging it. The channel is closed
// when the client stops: after Close, or when the connection fails (see
// Err).
func (c *Client) Events() <-chan Event { return c.events }

// Dropped is the number of events acknowledged but dropped because the
// Events channel was full. When it grows, the consumer's view is stale:
// set the LLQs up again (or re-query) to resynchronize.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// LocalAddr is the local address of the client's socket or connection,
// e.g. to map its port with NAT-PMP.
func (c *Client) LocalAddr() netip.AddrPort { return c.tr.localAddr() }

// Done is closed when the client stops, like the Events channel.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err reports why the client stopped: nil while it runs, ErrClosed after
// Close, or the error that ended its connection (for instance io.EOF when
// the server closed it). A stopped client cannot be used again: dial anew
// and set the LLQs up again.
func (c *Client) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the socket or connection and waits for the reader to stop.
// It does not cancel the LLQs (the server lets them expire); call Cancel
// first for that.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.mu.Unlock()
		err = c.tr.close()
		<-c.done
	})
	return err
}

// read is the client's single reader: it hands each message to handle
// until the transport fails.
func (c *Client) read() {
	var err error
	for {
		var b []byte
		b, err = c.tr.read()
		if err != nil {
			break
		}
		c.handle(b, time.Now())
	}
	c.mu.Lock()
	if c.closing {
		err = ErrClosed
	} else {
		c.logf("llq: connection to %s lost: %v", c.cfg.Server, err)
	}
	c.err = err
	c.mu.Unlock()
	close(c.done)
	close(c.events)
}
