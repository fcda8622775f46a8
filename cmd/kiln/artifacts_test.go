package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnlab/kiln/image/artifacts/artifactstest"
)

// TestArtifacts runs one lab through kiln artifacts: each step sees what
// the steps before it recorded. k3s is fetched from a stand-in release on
// a local server (--base); HashiCorp's signature cannot be made here, so
// Consul is imported.
func TestArtifacts(t *testing.T) {
	state, cacheDir := t.TempDir(), t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	t.Setenv("XDG_CACHE_HOME", cacheDir)
	labDir := filepath.Join(state, "kiln", "homelab") // the embedded profile's lab
	up := artifactstest.New(t)
	k3s := up.K3s(t, "v1.33.6+k3s1", "one", "amd64")
	files := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	consul := file("consul", artifactstest.ELF("amd64", "consul 1.22.6"))
	otherConsul := file("consul-rebuilt", artifactstest.ELF("amd64", "consul 1.22.6, rebuilt"))
	newer := file("consul_1.22.7_linux_amd64.zip", artifactstest.Zip(t, map[string][]byte{"consul": artifactstest.ELF("amd64", "1.22.7")}))
	base := "--base=k3s=" + up.URL + artifactstest.K3sPath

	for _, tc := range []struct {
		name     string
		args     []string
		wantErr  []string // substrings; nil means success
		wantCode int
		stdout   []string // substrings of stdout
	}{
		{name: "list, nothing fetched", args: []string{"artifacts", "list"}, stdout: []string{
			"NAME    VERSION       ARCH   FILE                             ORIGIN       SHA256  CACHED",
			"consul  1.22.6        amd64  consul_1.22.6_linux_amd64.zip    not fetched  -       no",
			"record: " + filepath.Join(labDir, "artifacts.lock.json"),
			"vault: the lab uses 1.21.4 (the lock's pin)"}},
		{name: "help", args: []string{"artifacts"}, stdout: []string{"artifacts import [flags] NAME=FILE..."}},
		{name: "unknown subcommand", args: []string{"artifacts", "verify"}, wantErr: []string{`unknown artifacts command "verify"`}, wantCode: 2},
		{name: "import without NAME=FILE", args: []string{"artifacts", "import", consul}, wantErr: []string{"want NAME=FILE"}, wantCode: 2},
		{name: "import of an artifact not pinned", args: []string{"artifacts", "import", "nomad=" + consul}, wantErr: []string{`"nomad" (the lock pins consul, k3s, vault)`}, wantCode: 2},
		{name: "import of an unpinned version", args: []string{"artifacts", "import", "consul=" + newer},
			wantErr: []string{"it is consul 1.22.7 by its name, the lock pins 1.22.6; pass --version 1.22.7 to use it for this lab"}, wantCode: 1},
		{name: "import of the pinned version, nothing to check it against", args: []string{"artifacts", "import", "consul=" + consul},
			wantErr: []string{"nothing to check it against", "pass --version 1.22.6 to take this file unverified"}, wantCode: 1},
		{name: "import of the pinned version, named", args: []string{"artifacts", "import", "--version", "1.22.6", "consul=" + consul},
			stdout: []string{"consul 1.22.6 amd64 consul imported sha256:" + sha(t, consul)}},
		{name: "import of other bytes", args: []string{"artifacts", "import", "consul=" + otherConsul},
			wantErr: []string{"consul 1.22.6 amd64 binary: sha256 mismatch: " + otherConsul + " has " + sha(t, otherConsul),
				"holds " + sha(t, consul), "import the file recorded, or remove that entry from " + filepath.Join(labDir, "artifacts.lock.json")}, wantCode: 1},
		{name: "--version for two artifacts", args: []string{"artifacts", "import", "--version", "1", "consul=" + consul, "k3s=" + consul},
			wantErr: []string{"--version applies to one artifact's files"}, wantCode: 2},
		{name: "import of an unpinned version, named", args: []string{"artifacts", "import", "--version", "1.22.7", "consul=" + newer},
			stdout: []string{"consul 1.22.7 amd64 consul_1.22.7_linux_amd64.zip imported"}},
		{name: "fetch without NAME", args: []string{"artifacts", "fetch"}, wantErr: []string{"needs at least one NAME"}, wantCode: 2},
		{name: "fetch k3s from the stand-in", args: []string{"artifacts", "fetch", base, "--arch", "amd64", "k3s"},
			stdout: []string{"k3s v1.33.6+k3s1 amd64 k3s verified sha256:" + artifactstest.SHA256(k3s["amd64"]["binary"]),
				"k3s v1.33.6+k3s1 amd64 k3s-airgap-images-amd64.tar.zst verified"}},
		{name: "list what the lab has", args: []string{"artifacts", "list", "--lab-dir", labDir}, stdout: []string{
			"consul  1.22.6        amd64  consul                           imported     " + sha(t, consul)[:12] + "  yes",
			"consul  1.22.7        amd64  consul_1.22.7_linux_amd64.zip    imported",
			"k3s     v1.33.6+k3s1  amd64  k3s                              verified",
			"consul: the lab uses 1.22.7 (the version last named by an import or fetch, in place of the lock's 1.22.6)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tc.args, &stdout, &stderr)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("run(%q) = %v\nstderr: %s", tc.args, err, stderr.String())
			case tc.wantErr != nil && err == nil:
				t.Fatalf("run(%q) succeeded, want an error", tc.args)
			case tc.wantErr != nil && exitCode(err) != tc.wantCode:
				t.Errorf("exit code %d, want %d (%v)", exitCode(err), tc.wantCode, err)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error lacks %q:\n%v", s, err)
				}
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
		})
	}

	// The second fetch works with the upstream gone.
	up.Close()
	if err := run(context.Background(), []string{"artifacts", "fetch", base, "--arch", "amd64", "k3s"}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Errorf("fetch with the upstream down: %v", err)
	}
}

func sha(t *testing.T, path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return artifactstest.SHA256(data)
}
