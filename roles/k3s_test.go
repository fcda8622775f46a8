package roles

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/kilnlab/kiln/internal/golden"
	"github.com/kilnlab/kiln/profiles"
)

// gitopsLab has a k3s server with GitOps and an agent on a bonded LAN,
// and profile values that need quoting in YAML.
const gitopsLab = `
name: gitops
network: {cidr: 10.0.0.0/24, gateway: 10.0.0.1, dns: [10.0.0.1]}
machines:
  - {name: gate, role: gate, board: rpi4, arch: arm64, mac: "52:54:00:00:00:01", address: 10.0.0.2}
  - name: k3s-1
    role: compute
    board: pc
    arch: amd64
    firmware: uefi
    mac: 52:54:00:00:02:01
    address: 10.0.0.21
    disks: [{name: system, serial: S1, size: 500GB, use: system}]
  - name: k3s-2
    role: compute
    board: pc
    arch: amd64
    firmware: bios
    mac: 52:54:00:00:02:02
    address: 10.0.0.22
    interfaces:
      nics: [{name: a, mac: "52:54:00:00:02:02"}, {name: b, mac: "52:54:00:00:12:02"}]
      bonds: [{name: bond0, mode: active-backup, members: [a, b]}]
    disks: [{name: system, serial: S2, size: 500GB, use: system}]
services:
  k3s:
    disable: [traefik, servicelb]
    tls_san: [k3s.gitops.lan, 10.0.0.21, "true"]
    gitops:
      repo: "git@git.example.net:lab/apps #1.git"
      path: clusters/gitops
      revision: "v1.0"
`

func gitopsProfile(t *testing.T) *profiles.Profile {
	t.Helper()
	p, err := profiles.Parse("gitops.yaml", []byte(gitopsLab))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// k3sIgnition is every k3s part of m's public and secret configs together,
// as a machine ends up with them.
func k3sIgnition(t *testing.T, p *profiles.Profile, m *profiles.Machine) types.Config {
	t.Helper()
	files, units, err := K3sFiles(p, m)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := K3sSecretFiles(m, "fake-k3s-token-"+m.Name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := types.Config{Ignition: types.Ignition{Version: types.MaxVersion.String()}}
	cfg.Storage.Directories = []types.Directory{privateDir(SecretsDir), privateDir(K3sSecretsDir)}
	cfg.Storage.Files = append(files, secret...)
	cfg.Systemd.Units = units
	return cfg
}

// TestK3sFiles pins the k3s configuration of a server with GitOps, an
// agent, and the reference lab's server without GitOps, as applied trees
// and identities; each config passes Ignition's parser, writes /etc alone
// (all the state image carries) and puts the token root-only.
func TestK3sFiles(t *testing.T) {
	home, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	gitops := gitopsProfile(t)
	for _, tc := range []struct {
		name, machine string
		p             *profiles.Profile
		role          string
		manifests     int
	}{
		{"server-gitops", "k3s-1", gitops, K3sServer, 2},
		{"agent", "k3s-2", gitops, K3sAgent, 0},
		{"homelab-server", "compute-1", home, K3sServer, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := machineNamed(t, tc.p, tc.machine)
			cfg := k3sIgnition(t, tc.p, m)
			if err := Validate(cfg); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := Apply(cfg, dir); err != nil {
				t.Fatal(err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != "etc" {
				t.Errorf("the config writes outside /etc: %v", ents)
			}
			fi, err := os.Stat(filepath.Join(dir, K3sTokenPath))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("token file: %v, %v", fi, err)
			}
			golden.Check(t, filepath.Join("testdata", "k3s-"+tc.name+".tree"), []byte(listTree(t, dir)))

			id := K3sIdentity(tc.p, m)
			if id.Role != tc.role || len(id.Manifests) != tc.manifests {
				t.Errorf("identity: role %s, %d manifests; want %s, %d", id.Role, len(id.Manifests), tc.role, tc.manifests)
			}
			for _, mf := range id.Manifests {
				if !slices.ContainsFunc(cfg.Storage.Files, func(f types.File) bool { return f.Path == mf.Staged }) {
					t.Errorf("identity names %s, which the config lacks", mf.Staged)
				}
			}
			idJSON, _ := json.MarshalIndent(id, "", "  ")
			golden.Check(t, filepath.Join("testdata", "k3s-"+tc.name+".json"), append(idJSON, '\n'))
		})
	}
}

// TestK3sConfigValues reads config.yaml back: every profile value arrives
// as the same string, whatever YAML would make of it unquoted.
func TestK3sConfigValues(t *testing.T) {
	p := gitopsProfile(t)
	for _, tc := range []struct {
		machine string
		want    k3sConfigFile
	}{
		{"k3s-1", k3sConfigFile{
			TokenFile: K3sTokenPath, NodeName: "k3s-1", NodeIP: "10.0.0.21", AdvertiseAddress: "10.0.0.21",
			TLSSAN:  []string{"k3s-1", "10.0.0.21", "k3s.gitops.lan", "true"},
			Disable: []string{"traefik", "servicelb"}, WriteKubeconfigMode: "0600",
		}},
		{"k3s-2", k3sConfigFile{Server: "https://10.0.0.21:6443", TokenFile: K3sTokenPath, NodeName: "k3s-2", NodeIP: "10.0.0.22"}},
	} {
		t.Run(tc.machine, func(t *testing.T) {
			files, _, err := K3sFiles(p, machineNamed(t, p, tc.machine))
			if err != nil {
				t.Fatal(err)
			}
			var got k3sConfigFile
			if err := yaml.Unmarshal([]byte(contentsOf(t, files, K3sConfigPath)), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("config.yaml (-want +got):\n%s", diff)
			}
		})
	}
	var app application
	files, _, _ := K3sFiles(p, machineNamed(t, p, "k3s-1"))
	if err := yaml.Unmarshal([]byte(contentsOf(t, files, K3sStagedManifestsDir+RootAppManifest)), &app); err != nil {
		t.Fatal(err)
	}
	want := appSource{RepoURL: "git@git.example.net:lab/apps #1.git", Path: "clusters/gitops", TargetRevision: "v1.0"}
	if diff := cmp.Diff(want, app.Spec.Source); diff != "" {
		t.Errorf("root Application's source (-want +got):\n%s", diff)
	}
}

// TestK3sNone: machines that run no k3s, and labs without it, get nothing.
func TestK3sNone(t *testing.T) {
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gate-1", "ceph-1"} {
		m := machineNamed(t, p, name)
		if f, u, err := K3sFiles(p, m); f != nil || u != nil || err != nil || K3sIdentity(p, m) != nil {
			t.Errorf("%s: K3sFiles = %d files, %d units, %v", name, len(f), len(u), err)
		}
		if _, err := K3sSecretFiles(m, "t"); err == nil {
			t.Errorf("%s: a token for a %s machine", name, m.Role)
		}
	}
	p.Services.K3s = nil
	if f, _, _ := K3sFiles(p, machineNamed(t, p, "compute-1")); f != nil {
		t.Error("a lab without k3s got its files")
	}
	for _, bad := range []string{"", "a b", "tok\n", "K10x::server:y"} {
		if _, err := K3sSecretFiles(machineNamed(t, p, "compute-1"), bad); err == nil {
			t.Errorf("token %q accepted", bad)
		}
	}
}

// TestK3sUnitNotEnabled: Apply writes k3s.service without enabling it
// (first boot starts it), and it is the install script's notify unit.
func TestK3sUnitNotEnabled(t *testing.T) {
	p := gitopsProfile(t)
	for _, name := range []string{"k3s-1", "k3s-2"} {
		_, units, err := K3sFiles(p, machineNamed(t, p, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(units) != 1 || units[0].Name != K3sUnit || units[0].Enabled != nil {
			t.Fatalf("%s: units %+v", name, units)
		}
		c := *units[0].Contents
		role := K3sIdentity(p, machineNamed(t, p, name)).Role
		for _, line := range []string{"Type=notify", "KillMode=process", "Delegate=yes", "LimitNOFILE=1048576",
			"ExecStartPre=-/sbin/modprobe br_netfilter", "ExecStart=" + K3sBinary + " " + role, "WantedBy=multi-user.target"} {
			if !slices.Contains(strings.Split(c, "\n"), line) {
				t.Errorf("%s: unit lacks %q", name, line)
			}
		}
	}
}

// TestK3sDefaultRoute: k3s will not start without a default route, and
// kiln adds none for it because every compute machine's LAN already has
// one, through network.gateway, whether its LAN is a NIC, a bond or a
// jumbo link.
func TestK3sDefaultRoute(t *testing.T) {
	labs := []*profiles.Profile{gitopsProfile(t), bonded(t)}
	v, err := profiles.Parse("variants.yaml", []byte(variants))
	if err != nil {
		t.Fatal(err)
	}
	labs = append(labs, v)
	for _, p := range labs {
		for i := range p.Machines {
			m := &p.Machines[i]
			if r, _ := Lookup(m.Role); !r.HasRootfs() {
				continue
			}
			cfg, err := Render(p, m)
			if err != nil {
				t.Fatal(err)
			}
			routes := 0
			for _, f := range cfg.Storage.Files {
				if strings.HasPrefix(f.Path, NetworkDir) && strings.HasSuffix(f.Path, ".network") {
					c := contentsOf(t, cfg.Storage.Files, f.Path)
					routes += strings.Count(c, "\nGateway="+p.Network.Gateway+"\n")
				}
			}
			if routes != 1 {
				t.Errorf("%s of %s: %d default routes in its networkd files, want 1", m.Name, p.Name, routes)
			}
		}
	}
}

// TestK3sManifests checks every manifest kiln renders as k3s's deploy
// controller reads it: YAML documents of objects with apiVersion, kind and
// metadata.name (and, on a real kubectl, kubectlAccepts).
func TestK3sManifests(t *testing.T) {
	for _, m := range renderedManifests(t) {
		if err := checkObject(m.data); err != nil {
			t.Errorf("%s: %v", m.name, err)
		}
	}
}

type manifest struct {
	name string
	data []byte
}

func renderedManifests(t *testing.T) []manifest {
	t.Helper()
	p := gitopsProfile(t)
	files, _, err := K3sFiles(p, machineNamed(t, p, "k3s-1"))
	if err != nil {
		t.Fatal(err)
	}
	var out []manifest
	for _, f := range files {
		if strings.HasPrefix(f.Path, K3sStagedManifestsDir) {
			out = append(out, manifest{path.Base(f.Path), []byte(contentsOf(t, files, f.Path))})
		}
	}
	if len(out) != 2 {
		t.Fatalf("%d manifests, want 2", len(out))
	}
	return out
}

func checkObject(data []byte) error {
	var obj struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
	}
	if err := yaml.Unmarshal(data, &obj); err != nil {
		return err
	}
	if obj.APIVersion == "" || obj.Kind == "" || obj.Metadata.Name == "" {
		return errMissing
	}
	return nil
}

var errMissing = errors.New("apiVersion, kind or metadata.name is missing")

// TestK3sManifestsKubectl runs a real kubectl (Debian's, the path in
// KILN_KUBECTL; qemu-tests/tools/kubectl.sh fetches it) on every rendered
// manifest, and on broken ones, which it must refuse. Without KILN_KUBECTL
// it skips, except under CI=true, where it fails.
func TestK3sManifestsKubectl(t *testing.T) {
	kubectl := os.Getenv("KILN_KUBECTL")
	if kubectl == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("KILN_KUBECTL is empty under CI=true: set it to the path qemu-tests/tools/kubectl.sh prints")
		}
		t.Skip("KILN_KUBECTL not set (qemu-tests/tools/kubectl.sh prints a kubectl's path)")
	}
	for _, m := range renderedManifests(t) {
		t.Run(m.name, func(t *testing.T) {
			if err := kubectlAccepts(t, kubectl, m.data); err != nil {
				t.Errorf("kubectl refuses %s: %v\n%s", m.name, err, m.data)
			}
		})
	}
	// Each is refused for its own fault, not because kubectl failed to run.
	for _, tc := range []struct{ name, data, want string }{
		{"no kind", "apiVersion: argoproj.io/v1alpha1\nmetadata:\n  name: root\n", "'Kind' is missing"},
		{"no name", "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  namespace: argocd\n", "missing metadata.name"},
		{"labels not a map", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: [a]\n", "metadata.labels"},
		{"not YAML", "apiVersion: v1\nkind: [ConfigMap\n", "error converting YAML to JSON"},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			err := kubectlAccepts(t, kubectl, []byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("kubectl on a manifest with %s: %v, want an error saying %q", tc.name, err, tc.want)
			}
		})
	}
}

// kubectlAccepts runs the strongest checks kubectl makes without a
// cluster (apply, create and their --dry-run=client need the server's API
// discovery, even with --validate=false):
//
//   - annotate --local --dry-run=client reads the file as apply would
//     (YAML documents to JSON, each decoded as an unstructured object, the
//     decoder k3s's deploy controller uses too), refusing one without a
//     kind, and decodes its metadata as Kubernetes' ObjectMeta (name and
//     namespace strings, labels and annotations string maps);
//   - kustomize refuses an object without kind or metadata.name.
//
// Neither checks a spec against its CRD's schema: that needs the CRD
// installed in a cluster.
func kubectlAccepts(t *testing.T, kubectl string, data []byte) error {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources:\n- m.yaml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"annotate", "--local", "--dry-run=client", "-o", "yaml", "-f", filepath.Join(dir, "m.yaml"), "kiln.check=ok"},
		{"kustomize", dir},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		cmd := exec.CommandContext(ctx, kubectl, args...)
		// No kubeconfig, no home: nothing could reach a cluster.
		cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(dir, "none"), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", args[0], err, bytes.TrimSpace(out))
		}
	}
	return nil
}

func contentsOf(t *testing.T, files []types.File, p string) string {
	t.Helper()
	return fileContents(t, types.Config{Storage: types.Storage{Files: files}}, p)
}
