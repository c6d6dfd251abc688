// Traefik's dynamic-configuration extension point: a nested module of Traefik's repository that
// its go.mod replaces with a local path, so the published module zip lacks it and the proxy does
// not serve it. Open-source Traefik defines it as empty structs; this is that.
module github.com/traefik/traefik/dynamic/ext

go 1.26.0
