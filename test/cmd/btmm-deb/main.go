// Command btmm-deb builds Debian packages from nfpm configuration files
// with nfpm's deb packager (github.com/goreleaser/nfpm/v2), as `make deb`
// does:
//
//	btmm-deb -version 0.0~git20261207102000.490bb26 -out bin \
//	    plugin/cmd/coredns/deb/nfpm.yaml client/cmd/btmm-client/deb/nfpm.yaml
//
// Run it from the repository's top: the paths in the configuration files
// (the built binaries in bin/, the unit files, the maintainer scripts) are
// relative to it. ${VERSION} and ${ARCH} in a configuration file are the
// -version and -arch given here; the version is taken as it is (a Debian
// version, not reparsed as semver).
//
// It is a module of its own, apart from github.com/openbtmm/btmm: nfpm
// brings some thirty modules (go-git among them, for changelogs this
// project does not use) that the server and the client must not have in
// their dependency graph.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the "deb" packager
)

func main() {
	version := flag.String("version", "", "the packages' Debian version (required)")
	arch := flag.String("arch", runtime.GOARCH, "the packages' architecture, as GOARCH names it")
	out := flag.String("out", ".", "the directory the .deb files are written to")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: btmm-deb -version VERSION [-arch GOARCH] [-out DIR] NFPM.YAML...\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *version == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	for _, config := range flag.Args() {
		path, err := build(config, *version, *arch, *out)
		if err != nil {
			fmt.Fprintf(os.Stderr, "btmm-deb: %s: %v\n", config, err)
			os.Exit(1)
		}
		fmt.Println(path)
	}
}

// build makes the package that config describes in dir and returns its
// path.
func build(config, version, arch, dir string) (string, error) {
	vars := map[string]string{"VERSION": version, "ARCH": arch}
	c, err := nfpm.ParseFileWithEnvMapping(config, func(name string) string { return vars[name] })
	if err != nil {
		return "", err
	}
	info, err := c.Get("deb")
	if err != nil {
		return "", err
	}
	info = nfpm.WithDefaults(info)
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	target := filepath.Join(dir, pkg.ConventionalFileName(info))
	info.Target = target
	f, err := os.Create(target)
	if err != nil {
		return "", err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(target)
		return "", err
	}
	return target, f.Close()
}
