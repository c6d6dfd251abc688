// Package http01 holds the HTTP-01 challenge's path and options.
package http01

import "time"

// PathPrefix is where ACME servers look for HTTP-01 tokens.
const PathPrefix = "/.well-known/acme-challenge/"

// Challenge is the HTTP-01 challenge.
type Challenge struct{}

// ChallengeOption configures the challenge.
type ChallengeOption func(*Challenge) error

// SetDelay waits before validation.
func SetDelay(time.Duration) ChallengeOption {
	return func(*Challenge) error { return nil }
}
