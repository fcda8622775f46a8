package build

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"

	"github.com/kilnlab/kiln/image/artifacts"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/roles"
)

// The upstream programs a role image carries (Consul and Vault on a
// storage node, k3s and its airgap images on a compute node), as the lab
// resolves them (image/artifacts): the profile's version, else the
// version the operator imported for this lab, else the lock's pin; fetched
// and verified once, then taken from the cache. Each role image also
// carries ArtifactsManifest, which says what it holds and where each file
// came from, so that a machine (and the rehearsal) can say which version
// runs.

// ArtifactsManifest is the role image's list of its upstream programs.
const ArtifactsManifest = "/usr/local/share/kiln/artifacts.json"

// Baked is one upstream program in a role image, as ArtifactsManifest
// lists it.
type Baked struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	// Origin is artifacts.OriginVerified or OriginImported.
	Origin string `json:"origin"`
	// Pinned: the version is the lock's pin.
	Pinned bool     `json:"pinned"`
	Files  []string `json:"files"` // sha256 of each file, binary first
}

// Need is an artifact a role needs and the version the profile asks for
// ("" for none), with the profile field that asks.
type Need struct {
	Name, Version, Field string
}

// RoleNeeds lists the artifacts role runs in lab p, in the order its
// image carries them.
func RoleNeeds(p *profiles.Profile, role string) []Need {
	s := p.Services
	if s == nil {
		return nil
	}
	var out []Need
	switch role {
	case profiles.RoleStorage:
		if s.Consul != nil {
			out = append(out, Need{"consul", s.Consul.Version, "services.consul.version"})
		}
		if s.Vault != nil {
			out = append(out, Need{"vault", s.Vault.Version, "services.vault.version"})
		}
	case profiles.RoleCompute:
		if s.K3s != nil {
			out = append(out, Need{"k3s", s.K3s.Version, "services.k3s.version"})
		}
	}
	return out
}

// artifactStore is the lab's record of upstream artifacts, in its secrets
// directory (where it also keeps the lab's keys).
func (b *builder) artifactStore() (*artifacts.Store, error) {
	dir, err := b.secretsDir()
	if err != nil {
		return nil, err
	}
	return &artifacts.Store{Pins: b.Lock.Artifacts, Cache: b.Cache, LabDir: dir, Progress: b.Progress, Log: b.Log}, nil
}

// fetchArtifacts makes every artifact the lab's roles need present and
// verified (no network once cached), before anything long is built.
func (b *builder) fetchArtifacts(ctx context.Context) error {
	st, err := b.artifactStore()
	if err != nil {
		return err
	}
	for _, role := range b.roles() {
		for _, n := range RoleNeeds(b.Profile, role) {
			if _, err := b.resolve(ctx, st, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolve returns what the lab uses of n, fetching it when it is a
// version the lock pins and the lab has not got yet. A version the lock
// does not pin and the lab never imported is the profile's error.
func (b *builder) resolve(ctx context.Context, st *artifacts.Store, n Need) (artifacts.Resolved, error) {
	r, err := st.Resolve(n.Name, arch, n.Version)
	if !errors.Is(err, artifacts.ErrMissing) {
		return r, b.profileErr(n, err)
	}
	version, _, verr := st.Version(n.Name, n.Version)
	if verr != nil {
		return r, b.profileErr(n, verr)
	}
	if pin := b.Lock.Artifacts[n.Name]; pin == nil || pin.Version != version {
		return r, b.profileErr(n, err)
	}
	if _, err := st.Fetch(ctx, n.Name, version, arch); err != nil {
		return r, err
	}
	r, err = st.Resolve(n.Name, arch, n.Version)
	return r, b.profileErr(n, err)
}

// profileErr places an error about a version the profile names at that
// field, so that the user sees the line to change.
func (b *builder) profileErr(n Need, err error) error {
	if err == nil || n.Version == "" {
		return err
	}
	pin := "none"
	if p := b.Lock.Artifacts[n.Name]; p != nil {
		pin = p.Version
	}
	return errors.New(b.Profile.At(n.Field, "%s %s is not pinned by kiln's lock (it pins %s) nor imported for this lab: %v", n.Name, n.Version, pin, err).String())
}

// roleArtifacts unpacks what role needs into the work directory and
// returns the image paths to put them at, with the role image's
// ArtifactsManifest.
func (b *builder) roleArtifacts(ctx context.Context, role string) (map[string]string, error) {
	needs := RoleNeeds(b.Profile, role)
	if len(needs) == 0 {
		return nil, nil
	}
	st, err := b.artifactStore()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.work, "artifacts-"+role)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	extra := map[string]string{}
	var baked []Baked
	for _, n := range needs {
		r, err := b.resolve(ctx, st, n)
		if err != nil {
			return nil, err
		}
		bk := Baked{Name: r.Name, Version: r.Version, Arch: r.Arch, Pinned: r.Pinned}
		for _, f := range r.Files {
			bk.Files = append(bk.Files, f.SHA256)
			bk.Origin = f.Origin
			switch f.Role {
			case artifacts.RoleBinary:
				bin := filepath.Join(dir, r.Name)
				if err := artifacts.Unpack(f.Path, r.Name, bin); err != nil {
					return nil, err
				}
				extra["/usr/local/bin/"+r.Name] = bin
			case artifacts.RoleImages:
				extra[roles.K3sImagesFile(arch)] = f.Path
			}
		}
		b.progressf("      %s: %s %s (%s%s)\n", role, r.Name, r.Version, bk.Origin, map[bool]string{true: ", the lock's pin"}[r.Pinned])
		baked = append(baked, bk)
	}
	data, err := json.MarshalIndent(baked, "", "  ")
	if err != nil {
		return nil, err
	}
	manifest := filepath.Join(dir, "artifacts.json")
	if err := os.WriteFile(manifest, append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	extra[ArtifactsManifest] = manifest
	return extra, nil
}

// mergeFiles returns a with b's entries added.
func mergeFiles(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}
