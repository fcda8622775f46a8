// Package profiles owns the lab profile: its schema, strict YAML decoding
// (unknown keys are errors), validation with file:line:field errors, and the
// embedded default lab, homelab.yaml (DESIGN.md §2).
package profiles
