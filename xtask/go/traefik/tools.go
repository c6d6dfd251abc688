//go:build tools

// Package tools pins the command this wrapper module builds: Traefik, the proxy that carries the
// traffic tests' requests to the pods the test kit plays.
package tools

import (
	_ "github.com/traefik/traefik/v3/cmd/traefik"
)
