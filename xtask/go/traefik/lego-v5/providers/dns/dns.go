// Package dns is lego's DNS-provider registry, with no provider built in.
package dns

import (
	"fmt"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/challenge"
)

// NewDNSChallengeProviderByName fails: no DNS provider is built in.
func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {
	return nil, fmt.Errorf("DNS challenge provider %q: %w", name, acme.ErrNotBuilt)
}
