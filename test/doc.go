// Package test holds the tests that drive the built binaries (make build)
// with the tools a user would use: nsupdate, dig and kdig against
// bin/coredns. Run them with `make test`.
package test
