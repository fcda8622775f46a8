//go:build tools

// Package vault pins the Vault release the rehearsals run: real Vault,
// built unpatched from the Go module proxy (see ../README.md).
package vault

import _ "github.com/hashicorp/vault"
