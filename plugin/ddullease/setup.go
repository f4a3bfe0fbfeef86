package ddullease

import (
	"math"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/openbtmm/btmm/plugin/pkg/corefile"
)

const pluginName = "ddul-lease"

var log = clog.NewWithPlugin(pluginName)

// RFC 6281 §5.2: leases from 30 minutes to 2 hours, typically 90 minutes.
// RFC 9664 §8 caps a KEY record's lease at 7 days by default.
const (
	defaultMin    = 30 * time.Minute
	defaultMax    = 2 * time.Hour
	defaultLease  = 90 * time.Minute
	defaultKeyMax = 7 * 24 * time.Hour
	// maxLease is the longest lease the option can carry: 2^31-1 seconds,
	// as RFC 6281 has the field signed (see clamp).
	maxLease = math.MaxInt32 * time.Second
)

func init() { plugin.Register(pluginName, setup) }

func setup(c *caddy.Controller) error {
	d, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		d.Next = next
		return d
	})
	return nil
}

// parse reads
//
//	ddul-lease {
//	    min     DURATION
//	    max     DURATION
//	    default DURATION
//	    key_max DURATION
//	}
func parse(c *caddy.Controller) (*DdulLease, error) {
	d := &DdulLease{min: defaultMin, max: defaultMax, def: defaultLease, keyMax: defaultKeyMax}
	if err := corefile.NoArgs(c); err != nil {
		return nil, err
	}
	seen, err := corefile.Properties(c, func(prop string, a []string) error {
		var field *time.Duration
		switch prop {
		case "min":
			field = &d.min
		case "max":
			field = &d.max
		case "default":
			field = &d.def
		case "key_max":
			field = &d.keyMax
		default:
			return corefile.ErrUnknown
		}
		if len(a) != 1 {
			return c.ArgErr()
		}
		v, err := time.ParseDuration(a[0])
		if err != nil || v < time.Second || v%time.Second != 0 {
			return c.Errf("%s needs a whole number of seconds, at least 1s (like 90m), not %q", prop, a[0])
		}
		if v > maxLease {
			// The option carries seconds in 31 bits (RFC 6281's signed field).
			return c.Errf("%s %v is above the longest lease the option can carry, %v", prop, v, maxLease)
		}
		*field = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	if d.min > d.max {
		return nil, c.Errf("min %v is above max %v", d.min, d.max)
	}
	if !seen["default"] {
		d.def = min(max(d.def, d.min), d.max)
	}
	if d.def < d.min || d.def > d.max {
		return nil, c.Errf("default %v is outside [%v, %v]", d.def, d.min, d.max)
	}
	if d.keyMax < d.min {
		return nil, c.Errf("key_max %v is below min %v", d.keyMax, d.min)
	}
	return d, nil
}
