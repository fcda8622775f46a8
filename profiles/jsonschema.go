package profiles

import (
	"bytes"
	_ "embed"
)

// The profile's JSON Schema (draft 2020-12) is generated from the types
// of schema.go, services.go and size.go and their comments (the
// descriptions), by TestJSONSchema in jsonschema_test.go: run
// `go test ./profiles -run TestJSONSchema -update` after changing a type;
// the test fails while the file is stale. Editors use it through the
// yaml-language-server modeline at the top of a profile. It checks the
// profile's shape (keys, kinds, required fields, enumerations); the rules
// across fields (addresses in the LAN, one system disk, unique serials)
// are Load's.

// SchemaFile is the schema's name beside homelab.yaml, as the embedded
// profile's modeline names it.
const SchemaFile = "profile.schema.json"

//go:embed profile.schema.json
var schemaJSON []byte

// JSONSchema returns the profile's JSON Schema.
func JSONSchema() []byte { return bytes.Clone(schemaJSON) }
