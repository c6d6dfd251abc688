//go:build tools

// Package tools pins the commands this wrapper module builds: Argo Rollouts' controller, the peer
// that `cargo xtask bench` measures Sluice against.
package tools

import (
	_ "github.com/argoproj/argo-rollouts/cmd/rollouts-controller"
)
