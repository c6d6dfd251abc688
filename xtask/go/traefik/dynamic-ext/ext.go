// Package ext is the extension point of Traefik's dynamic configuration; empty in open-source
// Traefik, and so here.
package ext

// HTTP is embedded in dynamic.HTTPConfiguration.
type HTTP struct{}

// Router is embedded in dynamic.Router.
type Router struct{}
