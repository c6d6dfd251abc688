// Package certcrypto names the key types of a certificate request.
package certcrypto

// KeyType is the type of a certificate's private key.
type KeyType string

// The key types Traefik offers.
const (
	EC256   = KeyType("P256")
	EC384   = KeyType("P384")
	RSA2048 = KeyType("2048")
	RSA3072 = KeyType("3072")
	RSA4096 = KeyType("4096")
	RSA8192 = KeyType("8192")
)
