package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/roles"
)

func write(t *testing.T, path, data string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckConfig(t *testing.T) {
	const server = "token-file: /t\nnode-name: k3s-1\nnode-ip: 10.0.0.21\ntls-san: [k3s-1]\n"
	const agent = "server: https://10.0.0.21:6443\ntoken-file: /t\nnode-name: k3s-2\nnode-ip: 10.0.0.22\n"
	for _, tc := range []struct {
		name, role, data, want string
		ok                     bool
	}{
		{"server", "server", server, "node k3s-1 at 10.0.0.21", true},
		{"agent", "agent", agent, "server https://10.0.0.21:6443", true},
		{"agent without server", "agent", server, "an agent needs server", false},
		{"agent with http", "agent", strings.Replace(agent, "https", "http", 1), "an agent needs server", false},
		{"server with server", "server", agent, "would join another server", false},
		{"no token file", "server", "node-name: a\nnode-ip: 10.0.0.1\n", "token-file, node-name and node-ip are required", false},
		{"bad node-ip", "server", strings.Replace(server, "10.0.0.21", "ten", 1), "not an IP address", false},
		{"number", "server", strings.Replace(server, "k3s-1\n", "7\n", 1), "node-name is not a non-empty string", false},
		{"not YAML", "server", "token-file: [\n", "unterminated", false},
		{"a list", "server", "- a\n", "not one YAML mapping", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, filepath.Join(t.TempDir(), "config.yaml"), tc.data, 0o644)
			_, c := checkConfig(tc.role, path)
			if c.OK != tc.ok || !strings.Contains(c.Detail, tc.want) {
				t.Errorf("checkConfig = %+v, want ok %v saying %q", c, tc.ok, tc.want)
			}
		})
	}
	if _, c := checkConfig("server", filepath.Join(t.TempDir(), "none")); c.OK {
		t.Error("a missing config passes")
	}
}

func TestCheckToken(t *testing.T) {
	const secret = "0123456789abcdef-THE-SECRET"
	dir := t.TempDir()
	for _, tc := range []struct {
		name, data string
		mode       os.FileMode
		want       string
		ok         bool
	}{
		{"good", secret + "\n", 0o600, "mode 0600, 27 bytes (not shown)", true},
		{"readable", secret, 0o644, "mode 0644, want 0600", false},
		{"empty", " \n", 0o600, "empty", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, filepath.Join(dir, tc.name), tc.data, 0o600)
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			c := checkToken(path)
			if c.OK != tc.ok || !strings.Contains(c.Detail, tc.want) {
				t.Errorf("checkToken = %+v, want ok %v saying %q", c, tc.ok, tc.want)
			}
			if strings.Contains(c.Detail, "SECRET") {
				t.Error("the detail shows the token")
			}
		})
	}
	for _, path := range []string{"", filepath.Join(dir, "missing"), dir} {
		if c := checkToken(path); c.OK {
			t.Errorf("checkToken(%q) passes", path)
		}
	}
}

// dirCase is a directory's files and what a check says of it.
type dirCase struct {
	name  string
	files map[string]string
	want  string
	ok    bool
}

// checkDirs runs check on a directory holding each case's files.
func checkDirs(t *testing.T, check func(dir string) Check, cases []dirCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tc.files {
				write(t, filepath.Join(dir, name), data, 0o644)
			}
			if c := check(dir); c.OK != tc.ok || !strings.Contains(c.Detail, tc.want) {
				t.Errorf("%+v, want ok %v saying %q", c, tc.ok, tc.want)
			}
		})
	}
}

func TestCheckImages(t *testing.T) {
	zst := "\x28\xb5\x2f\xfd rest"
	checkDirs(t, checkImages, []dirCase{
		{"zstd", map[string]string{"k3s-airgap-images-amd64.tar.zst": zst, "notes.txt": "x"}, "k3s-airgap-images-amd64.tar.zst", true},
		{"zst that is not", map[string]string{"k3s-airgap-images-amd64.tar.zst": "plain"}, "is empty or not .tar.zst", false},
		{"empty tar", map[string]string{"images.tar": ""}, "is empty or not .tar", false},
		{"no tarball", map[string]string{"README": "x"}, "no airgap images tarball", false},
	})
	if c := checkImages(filepath.Join(t.TempDir(), "none")); c.OK {
		t.Error("a missing directory passes")
	}
}

func TestCheckManifests(t *testing.T) {
	const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n"
	good := strings.ReplaceAll(cm, "%s", "a") + "---\n" + strings.ReplaceAll(cm, "%s", "b")
	checkDirs(t, checkManifests, []dirCase{
		{"two objects", map[string]string{"a.yaml": good}, "1: a.yaml (ConfigMap a, ConfigMap b)", true},
		{"json and nested", map[string]string{"sub/c.json": `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"c"}}`}, "sub/c.json (Secret c)", true},
		{"no kind", map[string]string{"a.yaml": "apiVersion: v1\nmetadata:\n  name: a\n"}, "a.yaml: document 1: kind is missing", false},
		{"name not a string", map[string]string{"a.yml": "apiVersion: v1\nkind: X\nmetadata:\n  name: 5\n"}, "metadata.name is missing or not a string", false},
		{"not YAML", map[string]string{"a.yaml": "apiVersion: v1\nkind: [X\n"}, "a.yaml: line 2", false},
		{"empty", map[string]string{"a.yaml": "# nothing\n"}, "no object in it", false},
		{"second document bad", map[string]string{"a.yaml": good + "---\nkind: X\n"}, "document 3: apiVersion", false},
		{"skipped, dotfile, other", map[string]string{"bad.yaml": "x", "bad.yaml.skip": "", ".bad.yaml": "x", "bad.txt": "x"}, "no manifests", true},
	})
	if c := checkManifests(filepath.Join(t.TempDir(), "none")); !c.OK {
		t.Errorf("a server without manifests fails: %+v", c)
	}
}

// TestKilnRendered: the stand-in passes what kiln renders for a server
// with GitOps, laid out as the installer and first boot lay it out (token
// file, staged manifests copied into k3s's directory).
func TestKilnRendered(t *testing.T) {
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	p.Services.K3s.GitOps = &profiles.GitOps{Repo: "https://git.example.net/lab/apps.git", Path: "clusters/homelab", Revision: "main"}
	m := &p.Machines[len(p.Machines)-1]
	if m.Name != "compute-1" {
		t.Fatalf("last machine is %s", m.Name)
	}
	root := t.TempDir()
	files, units, err := roles.K3sFiles(p, m)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := roles.K3sSecretFiles(m, "fake-token")
	if err != nil {
		t.Fatal(err)
	}
	cfg := types.Config{Ignition: types.Ignition{Version: types.MaxVersion.String()}}
	cfg.Storage.Files, cfg.Systemd.Units = append(files, secret...), units
	if err := roles.Apply(cfg, root); err != nil {
		t.Fatal(err)
	}
	id := roles.K3sIdentity(p, m)
	for _, mf := range id.Manifests {
		b, err := os.ReadFile(filepath.Join(root, mf.Staged))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(root, mf.Path), string(b), 0o644)
	}
	write(t, filepath.Join(root, roles.K3sImagesFile(m.Arch)), "\x28\xb5\x2f\xfd", 0o644)

	c, conf := checkConfig(id.Role, filepath.Join(root, id.Config))
	if !conf.OK || c.TokenFile != id.TokenFile || c.DataDir != defaultDataDir {
		t.Fatalf("config: %+v, %+v", conf, c)
	}
	for _, ch := range []Check{
		checkToken(filepath.Join(root, c.TokenFile)),
		checkImages(filepath.Join(root, id.ImagesDir)),
		checkManifests(filepath.Join(root, c.DataDir, "server", "manifests")),
	} {
		if !ch.OK {
			t.Errorf("%s: %s", ch.Name, ch.Detail)
		}
	}
	if ch := checkManifests(filepath.Join(root, c.DataDir, "server", "manifests")); !strings.Contains(ch.Detail, "HelmChart argocd") || !strings.Contains(ch.Detail, "Application root") {
		t.Errorf("manifests: %s", ch.Detail)
	}
}
