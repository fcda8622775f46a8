//go:build tools

// Package consul pins the Consul release the rehearsals run: real Consul,
// built unpatched from the Go module proxy (see ../README.md).
package consul

import _ "github.com/hashicorp/consul"
