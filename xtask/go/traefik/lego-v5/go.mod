// The part of lego v5's API that Traefik compiles against, without ACME behind it.
//
// Traefik's ACME provider imports lego's DNS-provider registry, which imports some two hundred
// DNS providers and their SDKs; many of those SDK versions are refused by the module proxy this
// project reaches, so the real lego cannot be built here. The traffic tests never ask Traefik for
// certificates, so the wrapper replaces lego with this module: the same package paths, types and
// functions Traefik uses, where every ACME operation fails with ErrNotBuilt.
module github.com/go-acme/lego/v5

go 1.26.0
