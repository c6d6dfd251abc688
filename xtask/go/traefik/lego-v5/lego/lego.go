// Package lego is the ACME client's entry point; here its client cannot be made.
package lego

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/challenge/http01"
	"github.com/go-acme/lego/v5/challenge/tlsalpn01"
	"github.com/go-acme/lego/v5/registration"
)

// DirectoryURLLetsEncrypt is Let's Encrypt's directory URL.
const DirectoryURLLetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// CertificateConfig configures certificate requests.
type CertificateConfig struct {
	KeyType             certcrypto.KeyType
	Timeout             time.Duration
	OverallRequestLimit int
	DisableCommonName   bool
}

// Config configures a client.
type Config struct {
	CADirURL    string
	User        registration.User
	UserAgent   string
	HTTPClient  *http.Client
	Certificate CertificateConfig
}

// NewConfig makes a configuration for user.
func NewConfig(user registration.User) *Config {
	return &Config{
		CADirURL:    DirectoryURLLetsEncrypt,
		User:        user,
		HTTPClient:  http.DefaultClient,
		Certificate: CertificateConfig{KeyType: certcrypto.RSA2048, Timeout: 30 * time.Second},
	}
}

// SolverManager sets the challenge solvers.
type SolverManager struct{}

// SetDNS01Provider fails: ACME is not built in.
func (*SolverManager) SetDNS01Provider(challenge.Provider, ...dns01.ChallengeOption) error {
	return acme.ErrNotBuilt
}

// SetHTTP01Provider fails: ACME is not built in.
func (*SolverManager) SetHTTP01Provider(challenge.Provider, ...http01.ChallengeOption) error {
	return acme.ErrNotBuilt
}

// SetTLSALPN01Provider fails: ACME is not built in.
func (*SolverManager) SetTLSALPN01Provider(challenge.Provider, ...tlsalpn01.ChallengeOption) error {
	return acme.ErrNotBuilt
}

// Client is an ACME client.
type Client struct {
	Certificate  *certificate.Certifier
	Challenge    *SolverManager
	Registration *registration.Registrar
}

// NewClient fails: ACME is not built in.
func NewClient(*Config) (*Client, error) {
	return nil, acme.ErrNotBuilt
}

// CreateCertPool reads PEM files into a pool (over the system pool if asked).
func CreateCertPool(paths []string, useSystem bool) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if useSystem {
		system, err := x509.SystemCertPool()
		if err != nil {
			return nil, err
		}
		pool = system
	}
	for _, path := range paths {
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading CA certificate %s: %w", path, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", path)
		}
	}
	return pool, nil
}
