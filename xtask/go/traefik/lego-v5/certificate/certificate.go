// Package certificate holds the certificate request and resource types.
package certificate

import (
	"context"
	"crypto"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
)

// Resource is an obtained certificate.
type Resource struct {
	ID                string             `json:"id"`
	Domains           []string           `json:"domains"`
	KeyType           certcrypto.KeyType `json:"keyType"`
	PreferredChain    string             `json:"preferredChain,omitempty"`
	Profile           string             `json:"profile,omitempty"`
	CertURL           string             `json:"certUrl"`
	CertStableURL     string             `json:"certStableUrl"`
	PrivateKey        []byte             `json:"-"`
	Certificate       []byte             `json:"-"`
	IssuerCertificate []byte             `json:"-"`
	CSR               []byte             `json:"-"`
}

// ObtainRequest asks for a certificate.
type ObtainRequest struct {
	Domains          []string
	MustStaple       bool
	EmailAddresses   []string
	PrivateKey       crypto.Signer
	KeyType          certcrypto.KeyType
	NotBefore        time.Time
	NotAfter         time.Time
	Bundle           bool
	PreferredChain   string
	EnableCommonName bool
	Profile          string
}

// RenewOptions asks for a renewal.
type RenewOptions struct {
	NotBefore                      time.Time
	NotAfter                       time.Time
	Bundle                         bool
	PreferredChain                 string
	EnableCommonName               bool
	Profile                        string
	AlwaysDeactivateAuthorizations bool
	MustStaple                     bool
	EmailAddresses                 []string
}

// Certifier obtains and renews certificates; here it never does.
type Certifier struct{}

// Obtain fails: ACME is not built in.
func (*Certifier) Obtain(context.Context, ObtainRequest) (*Resource, error) {
	return nil, acme.ErrNotBuilt
}

// Renew fails: ACME is not built in.
func (*Certifier) Renew(context.Context, Resource, *RenewOptions) (*Resource, error) {
	return nil, acme.ErrNotBuilt
}
