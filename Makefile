# The Go toolchain's own caches make repeated builds fast; nothing here is
# installed outside the repository.
GO      ?= go
BIN     := bin
GOFLAGS ?=

.PHONY: deps-lab deb all build coredns btmm-admin btmm-client btmm-lab btmm-updateload wireguard-go etcd test unit interop bench bench-update bench-tunnel fuzz vet demo lab-up lab-down clean FORCE

all: build

build: coredns btmm-admin btmm-client btmm-lab wireguard-go etcd btmm-updateload

coredns:
	$(GO) build $(GOFLAGS) -o $(BIN)/coredns ./plugin/cmd/coredns

# The operator's tool: users added, revoked, rotated on a running server.
btmm-admin:
	$(GO) build $(GOFLAGS) -o $(BIN)/btmm-admin ./plugin/cmd/btmm-admin

btmm-client:
	$(GO) build $(GOFLAGS) -o $(BIN)/btmm-client ./client/cmd/btmm-client

# The UPDATE load generator of bench-update, for any server.
btmm-updateload:
	$(GO) build $(GOFLAGS) -o $(BIN)/btmm-updateload ./test/bench/cmd/btmm-updateload

# The network lab's command (root): btmm-lab up | show | down.
btmm-lab:
	$(GO) build $(GOFLAGS) -o $(BIN)/btmm-lab ./test/lab/cmd/btmm-lab

# wireguard-go, the peer the tunnel's throughput is compared with: built
# from the Go module proxy at the version go.mod pins (the module whose tun
# package the client uses).
wireguard-go:
	$(GO) build $(GOFLAGS) -o $(BIN)/wireguard-go golang.zx2c4.com/wireguard

# etcd, the server behind the etcd zone store's tests
# (plugin/pkg/store/etcdstore/etcdtest starts clusters of it): built from
# the Go module proxy at the version go.mod pins, from the server module's
# main package (go.mod lists it as a tool so that go mod tidy keeps it).
etcd:
	$(GO) build $(GOFLAGS) -o $(BIN)/etcd go.etcd.io/etcd/server/v3

# The Debian packages btmm-server and btmm-client in $(DEB_OUT), built with
# nfpm's deb packager (test/cmd/btmm-deb, a module of its own so that nfpm's
# dependencies stay out of go.mod) from the nfpm.yaml beside each program's
# main package. The version: the latest tag vX.Y.Z as X.Y.Z (with
# +N.gHASH for N commits since), else 0~gitDATE.HASH from the last
# commit's date (UTC), so that a later commit makes a higher version; or
# `make deb DEB_VERSION=1.2.3`.
DEB_OUT     ?= $(BIN)
DEB_VERSION ?= $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//; s/-\([0-9]*\)-g/+\1.g/' | grep . || \
	TZ=UTC0 git log -1 --format='0~git%cd.%h' --date=format-local:%Y%m%d%H%M%S 2>/dev/null || echo 0~unknown)
deb: coredns btmm-admin btmm-client
	$(GO) -C test/cmd/btmm-deb build $(GOFLAGS) -o $(CURDIR)/$(BIN)/btmm-deb .
	@mkdir -p $(DEB_OUT)
	$(BIN)/btmm-deb -version '$(DEB_VERSION)' -arch $$($(GO) env GOARCH) -out $(DEB_OUT) \
	  plugin/cmd/coredns/deb/nfpm.yaml client/cmd/btmm-client/deb/nfpm.yaml

# The whole system on one machine: a lab with the server and two hosts behind
# two NATs, told in plain words; nothing is left behind (root).
demo: deps-lab build
	$(BIN)/btmm-lab demo

# The Debian packages the lab needs, installed where missing (root).
deps-lab:
	.ci/deps lab

lab-up: btmm-lab
	$(BIN)/btmm-lab up

lab-down: btmm-lab
	$(BIN)/btmm-lab down

# Every test: unit and plugin tests, then the interop tests in test/ that
# drive the built bin/coredns with nsupdate, dig and kdig.
# One package at a time (-p 1): the lab's NAT daemons and timings must not
# share the two cores of a small machine with the load of the crash and
# bench-update tests.
# Every test; the last line names the tests that skipped (no root, a
# missing Debian package) and what would run them (.ci/deps installs the
# packages).
test: build vet
	$(GO) run ./test/cmd/testsummary -p 1 -count=1 -timeout 25m ./...

vet:
	$(GO) vet ./...
	$(GO) -C test/cmd/btmm-deb vet ./...

# The benchmarks: DNS Push beside LLQ (change latency at 1 k and 100 k
# subscriptions, memory each); a million users in the store beside the same in a key
# file (start-up, memory, add and revoke under load); one user's flood of UPDATEs against another's latency,
# with tsig-update's per-key rate and without; the zone on etcd (two instances on a three-member
# cluster that syncs) beside the file store, updates/s at c=1 and c=32 and
# LLQ event latency, in one run; updates (this project's store beside
# CoreDNS's dynupdate, at 1 k, 100 k and 1 M records) and LLQ event latency
# (1 k and 100 k live LLQs), through the built server; the store alone;
# bytes per live LLQ.
bench: build
	BTMM_BENCH_ETCD=full $(GO) test -count=1 -v -run '^TestEtcdBench$$' ./test/bench/
	BTMM_BENCH_FAIR=full $(GO) test -count=1 -v -run '^TestFairness$$' ./test/bench/
	BTMM_BENCH_PUSH=full $(GO) test -count=1 -v -timeout 20m -run '^TestPushBench$$' ./test/bench/
	BTMM_BENCH_USERS=full $(GO) test -count=1 -v -timeout 30m -run '^TestUsersBench$$' ./test/bench/
	$(GO) test -run '^$$' -bench . -benchtime 100x -timeout 60m ./test/bench/
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./plugin/pkg/store/boltstore/
	$(GO) test -run '^$$' -bench . -benchtime 1x ./plugin/llq/

# UPDATEs and queries beside BIND 9 and Knot (Debian packages bind9, knot,
# dnsperf): the same zone (10 k and 100 k records, 1,000 users, each key
# allowed its own subtree), the same UPDATE load (test/bench/updateload,
# also bin/btmm-updateload) at concurrency 1 and 32 in turns, dnsperf
# against each and against CoreDNS's file plugin; prints medians and
# ratios; then 20 trials of kill -9 under 32 clients. `make test` runs a
# short version of both.
bench-update: build
	BTMM_BENCH_UPDATE=full $(GO) test -count=1 -v -run '^TestUpdatePeers$$' -timeout 60m ./test/bench/
	BTMM_BENCH_UPDATE=full $(GO) test -count=1 -v -run '^TestKillUnderLoad$$' ./test/

# TCP throughput through the tunnel and through wireguard-go, in turns in
# one lab (root; iperf3), one way and both ways at once: prints each run,
# the medians, "ratio X" and "ratio both ways X". To compare with an older
# build: BENCH_TUNNEL_ARGS="-baseline /path/to/old/btmm-client".
BENCH_TUNNEL_ARGS ?=
bench-tunnel: build
	$(BIN)/btmm-lab bench-tunnel $(BENCH_TUNNEL_ARGS)

# A short run of every fuzz target (FUZZTIME each).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep ^Fuzz); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf $(BIN)
