// Command btmm-updateload sends TSIG-signed UPDATEs to a DNS server, as
// many as it answers, and prints the rate and latencies: the load that
// `make bench-update` puts on this server, BIND and Knot alike.
//
//	btmm-updateload -server 127.0.0.1:5301 -zone members.example.com -keys users.keys -c 32 -t 20s
//
// Each UPDATE adds one A record at a new name under the domain of the key
// that signs it (keys from the file in turn), over UDP.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/test/bench/updateload"
)

func main() {
	server := flag.String("server", "127.0.0.1:53", "the server's UPDATE address, host:port")
	zone := flag.String("zone", "", "the zone to update (required)")
	keys := flag.String("keys", "", "TSIG keys in BIND's key-file format, each named after a domain it may change (required)")
	c := flag.Int("c", 1, "concurrent senders")
	d := flag.Duration("t", 20*time.Second, "stop after this long")
	n := flag.Int("n", 0, "stop after this many UPDATEs (0: no limit)")
	rate := flag.Float64("rate", 0, "UPDATEs per second in all (0: as many as the server answers)")
	prefix := flag.String("prefix", fmt.Sprintf("load%d-", time.Now().Unix()), "first characters of every added name")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: %s -zone ZONE -keys FILE [flags]\n\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *zone == "" || *keys == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	ks, err := keyfile.ParseFile(*keys)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	res, err := updateload.Run(updateload.Config{Addr: *server, Zone: *zone, Keys: ks, Concurrency: *c, Duration: *d, Max: *n, Prefix: *prefix, Rate: *rate})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(res)
	if res.FirstError != "" {
		fmt.Println("first failure:", res.FirstError)
	}
	if res.Updates == 0 {
		os.Exit(1)
	}
}
