package firstboot

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kilnlab/kiln/roles"
)

// The k3s phase of a compute machine: put the staged GitOps manifests
// into k3s's auto-deploy directory (the state image carries only /etc),
// start k3s, and wait until it says it is ready: real k3s through its API
// server's /readyz, the rehearsal's labelled stand-in through `k3s check`.

// K3sReadyTimeout bounds the wait for k3s to be ready: a server imports
// its airgap images and starts its system pods first.
const K3sReadyTimeout = 10 * time.Minute

// k3sTasks are the k3s phase's tasks; none when the machine runs no k3s.
func (s *node) k3sTasks() []Task {
	k := s.env.Machine.K3s
	if k == nil {
		return nil
	}
	return []Task{
		{Name: "manifests", Run: s.k3sManifests},
		{Name: "start", Run: s.systemctlStart(k.Unit)},
		{Name: "ready", Run: s.waitK3sReady},
	}
}

// k3sManifests copies each staged manifest into place (unchanged files
// are left alone, so k3s does not re-apply them).
func (s *node) k3sManifests(context.Context) error {
	for _, m := range s.env.Machine.K3s.Manifests {
		b, err := s.readFile(m.Staged)
		if err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		if err := s.writeFile(m.Path, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// waitK3sReady waits until k3s answers ready.
func (s *node) waitK3sReady(ctx context.Context) error {
	return s.wait(ctx, or(s.K3sTimeout, K3sReadyTimeout), func(ctx context.Context) (bool, error) {
		ver, err := s.run(ctx, roles.K3sBinary, "--version")
		if err != nil {
			return false, err
		}
		if strings.Contains(string(ver), "STAND-IN") {
			_, err = s.run(ctx, roles.K3sBinary, "check")
		} else {
			_, err = s.run(ctx, roles.K3sBinary, "kubectl", "get", "--raw", "/readyz")
		}
		return err == nil, err
	})
}
