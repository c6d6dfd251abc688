// Package dns01 holds the DNS-01 challenge options Traefik sets.
package dns01

import (
	"strings"
	"time"
)

// Options configures the DNS client.
type Options struct {
	RecursiveNameservers []string
	Timeout              time.Duration
	TCPOnly              bool
	NetworkStack         int
}

// Client resolves DNS records for the challenge.
type Client struct{ opts Options }

// NewClient makes a client.
func NewClient(opts *Options) *Client {
	if opts == nil {
		return &Client{}
	}
	return &Client{opts: *opts}
}

// SetDefaultClient sets the default client (kept for the API; nothing uses it here).
func SetDefaultClient(*Client) {}

// Challenge is the DNS-01 challenge.
type Challenge struct{}

// ChallengeOption configures the challenge.
type ChallengeOption func(*Challenge) error

// CondOptions applies opt only when condition holds.
func CondOptions(condition bool, opt ...ChallengeOption) ChallengeOption {
	return func(c *Challenge) error {
		if !condition {
			return nil
		}
		for _, o := range opt {
			if err := o(c); err != nil {
				return err
			}
		}
		return nil
	}
}

// DisableAuthoritativeNssPropagationRequirement skips the authoritative check.
func DisableAuthoritativeNssPropagationRequirement() ChallengeOption {
	return func(*Challenge) error { return nil }
}

// DisableRecursiveNSsPropagationRequirement skips the recursive check.
func DisableRecursiveNSsPropagationRequirement() ChallengeOption {
	return func(*Challenge) error { return nil }
}

// PropagationWait waits before (or instead of) the propagation checks.
func PropagationWait(time.Duration, bool) ChallengeOption {
	return func(*Challenge) error { return nil }
}

// UnFqdn removes the trailing dot of a fully qualified domain name.
func UnFqdn(name string) string {
	return strings.TrimSuffix(name, ".")
}
