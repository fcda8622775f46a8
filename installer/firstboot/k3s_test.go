package firstboot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/roles"
)

// TestK3sPhase: on the reference lab's k3s server with GitOps, the k3s
// phase copies the staged manifests into k3s's auto-deploy directory,
// starts k3s and waits until the stand-in's check passes (it asks real
// k3s's API server instead), then its health says STAND-IN.
func TestK3sPhase(t *testing.T) {
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	p.Services.K3s.GitOps = &profiles.GitOps{Repo: "https://git.example.net/lab/apps.git", Path: "apps", Revision: "main"}
	m := &p.Machines[4]
	root := t.TempDir()
	cfg, err := roles.Render(p, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := roles.Apply(cfg, root); err != nil {
		t.Fatal(err)
	}
	id, err := LoadMachine(filepath.Join(root, roles.IdentityPath))
	if err != nil {
		t.Fatal(err)
	}
	if id.K3s == nil || len(id.K3s.Manifests) != 2 {
		t.Fatalf("%s's identity: k3s %+v, want the server with 2 manifests", m.Name, id.K3s)
	}
	checks := 0
	var ran []string
	env := &Env{Log: quiet(), Console: &bytes.Buffer{}, Machine: id, Storage: &Storage{Root: root, Poll: time.Millisecond,
		Command: func(ctx context.Context, name string, args ...string) ([]byte, error) {
			ran = append(ran, strings.Join(append([]string{name}, args...), " "))
			switch strings.Join(args, " ") {
			case "--version":
				return []byte("k3s version v0.0.0-kiln-standin (STAND-IN: not Kubernetes; kiln's rehearsal only)\n"), nil
			case "check":
				if checks++; checks < 2 {
					return nil, errors.New("k3s server is not running yet")
				}
				return []byte("config ok\nimages ok\nmanifests ok\n"), nil
			}
			return nil, nil
		}}}
	s := env.storageNode()
	r := Runner{Dir: t.TempDir(), Log: quiet()}
	if err := r.Run(context.Background(), []Phase{{Name: "k3s", Tasks: s.k3sTasks()}}); err != nil {
		t.Fatal(err)
	}
	for _, mf := range id.K3s.Manifests {
		staged, _ := os.ReadFile(filepath.Join(root, mf.Staged))
		placed, err := os.ReadFile(filepath.Join(root, mf.Path))
		if err != nil || len(staged) == 0 || !bytes.Equal(staged, placed) {
			t.Errorf("%s not copied to %s: %v", mf.Staged, mf.Path, err)
		}
	}
	want := []string{"systemctl enable --now k3s.service",
		roles.K3sBinary + " --version", roles.K3sBinary + " check",
		roles.K3sBinary + " --version", roles.K3sBinary + " check"}
	if diff := cmp.Diff(want, ran); diff != "" {
		t.Errorf("ran (-want +got):\n%s", diff)
	}
	h := env.Health(context.Background(), r.Dir)
	if len(h.Services) != 1 || h.Services[0].Status != "ok" || !strings.HasPrefix(h.Services[0].Detail, "STAND-IN: k3s version v0.0.0-kiln-standin") {
		t.Errorf("health: %+v", h)
	}
}
