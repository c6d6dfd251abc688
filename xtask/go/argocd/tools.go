//go:build tools

// Package tools names the commands this wrapper module builds.
package tools

import _ "github.com/argoproj/argo-cd/v3/cmd"
