// Package acme holds the ACME account types Traefik stores in its acme.json.
package acme

import "errors"

// ErrNotBuilt is what every ACME operation of this build returns.
var ErrNotBuilt = errors.New("ACME is not built into this Traefik (the Sluice test kit's build replaces lego)")

// Account is the ACME account object (RFC 8555 section 7.1.2).
type Account struct {
	Status                 string   `json:"status,omitempty"`
	Contact                []string `json:"contact,omitempty"`
	TermsOfServiceAgreed   bool     `json:"termsOfServiceAgreed,omitempty"`
	Orders                 string   `json:"orders,omitempty"`
	OnlyReturnExisting     bool     `json:"onlyReturnExisting,omitempty"`
	ExternalAccountBinding []byte   `json:"externalAccountBinding,omitempty"`
}

// ExtendedAccount is an account with its URL.
type ExtendedAccount struct {
	Account

	Location string `json:"accountURL,omitempty"`
}
