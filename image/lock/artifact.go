package lock

import (
	"fmt"
	"slices"
	"strings"
)

// Artifact pins one upstream release (Consul, Vault, k3s) that kiln fetches
// as is: its version and where its files are. File names, the checksum
// list and any signature derive from Source by convention; image/artifacts
// owns that convention, fetches, verifies and records them.
type Artifact struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Source  string `json:"source"` // "hashicorp" or "k3s"
	Base    string `json:"base"`   // e.g. https://releases.hashicorp.com
	// Arches the version is pinned for, e.g. amd64 and arm64.
	Arches []string `json:"arches"`
	// SHA256 by arch, then file role ("binary", "images"), where known.
	// A pin without one takes the upstream checksum list's on first fetch,
	// and the lab's record keeps it from then on.
	SHA256 map[string]map[string]string `json:"sha256,omitempty"`
}

// Known returns the pinned sha256 of a file of the artifact, if the lock
// carries one.
func (a *Artifact) Known(arch, role string) (string, bool) {
	sha, ok := a.SHA256[arch][role]
	return sha, ok
}

// check refuses a pin kiln could not fetch by: it names the artifact by
// its key in the lockfile.
func (a *Artifact) check(key string) error {
	switch {
	case a == nil:
		return fmt.Errorf("lock: artifact %q is empty", key)
	case a.Name != key:
		return fmt.Errorf("lock: artifact %q is named %q", key, a.Name)
	case a.Version == "" || a.Source == "" || a.Base == "" || len(a.Arches) == 0:
		return fmt.Errorf("lock: artifact %q needs version, source, base and arches", key)
	}
	for arch, roles := range a.SHA256 {
		if !slices.Contains(a.Arches, arch) {
			return fmt.Errorf("lock: artifact %q: sha256 for arch %q, which it does not pin", key, arch)
		}
		for role, sha := range roles {
			if len(sha) != 64 || strings.Trim(sha, "0123456789abcdef") != "" {
				return fmt.Errorf("lock: artifact %q: %s %s: bad sha256 %q", key, arch, role, sha)
			}
		}
	}
	return nil
}

func (f *File) checkArtifacts() error {
	for key, a := range f.Artifacts {
		if err := a.check(key); err != nil {
			return err
		}
	}
	return nil
}
