//go:build !linux

package boltstore

import "os"

// fdatasync is fsync where the system has no fdatasync (macOS).
func fdatasync(f *os.File) error { return f.Sync() }
