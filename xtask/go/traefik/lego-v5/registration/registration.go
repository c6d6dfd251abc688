// Package registration holds the ACME account registration API.
package registration

import (
	"context"
	"crypto"

	"github.com/go-acme/lego/v5/acme"
)

// User is an ACME account holder.
type User interface {
	GetEmail() string
	GetRegistration() *acme.ExtendedAccount
	GetPrivateKey() crypto.Signer
}

// RegisterOptions are the options of a registration.
type RegisterOptions struct {
	TermsOfServiceAgreed bool
}

// RegisterEABOptions are the options of a registration with external account binding.
type RegisterEABOptions struct {
	TermsOfServiceAgreed bool
	Kid                  string
	HmacEncoded          string
}

// Registrar registers accounts; here it never does.
type Registrar struct{}

// Register fails: ACME is not built in.
func (*Registrar) Register(context.Context, RegisterOptions) (*acme.ExtendedAccount, error) {
	return nil, acme.ErrNotBuilt
}

// RegisterWithExternalAccountBinding fails: ACME is not built in.
func (*Registrar) RegisterWithExternalAccountBinding(context.Context, RegisterEABOptions) (*acme.ExtendedAccount, error) {
	return nil, acme.ErrNotBuilt
}
