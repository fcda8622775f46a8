package profiles

import "bytes"

// DefaultYAML returns the embedded reference lab's text, for whoever
// carries the profile verbatim (the gate's payload).
func DefaultYAML() []byte { return bytes.Clone(homelab) }
