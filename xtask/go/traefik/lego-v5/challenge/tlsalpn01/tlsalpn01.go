// Package tlsalpn01 holds the TLS-ALPN-01 protocol name and options.
package tlsalpn01

import (
	"time"

	"github.com/go-acme/lego/v5/acme"
)

// ACMETLS1Protocol is the ALPN protocol of the TLS-ALPN-01 challenge.
const ACMETLS1Protocol = "acme-tls/1"

// Challenge is the TLS-ALPN-01 challenge.
type Challenge struct{}

// ChallengeOption configures the challenge.
type ChallengeOption func(*Challenge) error

// SetDelay waits before validation.
func SetDelay(time.Duration) ChallengeOption {
	return func(*Challenge) error { return nil }
}

// ChallengeBlocks would make the challenge certificate; ACME is not built in.
func ChallengeBlocks(string, string) ([]byte, []byte, error) {
	return nil, nil, acme.ErrNotBuilt
}
