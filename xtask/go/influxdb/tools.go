//go:build tools

// Package tools pins the commands this wrapper module builds: influxd, and influxdata's
// pkg-config wrapper, which builds Flux's Rust library (libflux) for cgo.
package tools

import (
	_ "github.com/influxdata/influxdb/cmd/influxd"
	_ "github.com/influxdata/pkg-config"
)
