package artifacts

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/artifacts/artifactstest"
)

// TestResolvePrecedence walks one lab through the precedence: the
// version asked for, else the most recent import, else the lock's pin.
func TestResolvePrecedence(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	type resolved struct {
		Version string
		Pinned  bool
		Origins []string
	}
	resolve := func(want string) (resolved, error) {
		r, err := f.store.Resolve("consul", "amd64", want)
		var origins []string
		for _, l := range r.Files {
			origins = append(origins, l.Origin)
		}
		return resolved{r.Version, r.Pinned, origins}, err
	}
	importFile := func(file, version string, data []byte) {
		t.Helper()
		if _, err := f.store.Import("consul", writeFile(t, file, data), version, "", RoleBinary); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []struct {
		name    string
		do      func()
		want    string // version asked for
		got     resolved
		wantErr []string // substrings of an ErrMissing
	}{
		{name: "nothing yet", wantErr: []string{"consul 1.22.6 amd64 binary: not fetched or imported for this lab",
			"`kiln artifacts fetch --lab-dir " + f.store.LabDir + " --arch amd64 consul`",
			"`kiln artifacts import --lab-dir " + f.store.LabDir + " --arch amd64 consul=FILE` with consul_1.22.6_linux_amd64.zip"}},
		{name: "fetched: the pin", do: func() {
			if _, err := f.store.Fetch(ctx, "consul", "", "amd64"); err != nil {
				t.Fatal(err)
			}
		}, got: resolved{consulVersion, true, []string{OriginVerified}}},
		{name: "an unpinned import chooses its version", do: func() {
			importFile("consul", "1.22.7", artifactstest.ELF("amd64", "consul 1.22.7"))
		}, got: resolved{"1.22.7", false, []string{OriginImported}}},
		{name: "the version asked for wins", want: consulVersion, got: resolved{consulVersion, true, []string{OriginVerified}}},
		{name: "a version asked for and missing", want: "1.22.8", wantErr: []string{"fetch --lab-dir " + f.store.LabDir + " --version 1.22.8 --arch amd64 consul"}},
		{name: "importing the pin again chooses it", do: func() {
			importFile("consul_1.22.6_linux_amd64.zip", "", f.consul["amd64"])
		}, got: resolved{consulVersion, true, []string{OriginVerified}}},
	} {
		if step.do != nil {
			step.do()
		}
		got, err := resolve(step.want)
		if step.wantErr != nil {
			if !errors.Is(err, ErrMissing) {
				t.Fatalf("%s: Resolve = %v, want ErrMissing", step.name, err)
			}
			for _, s := range step.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%s: error lacks %q: %v", step.name, s, err)
				}
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if d := cmp.Diff(step.got, got); d != "" {
			t.Errorf("%s: -want +got:\n%s", step.name, d)
		}
	}

	// Use refuses bytes that changed in the cache since they were recorded.
	r, err := f.store.Resolve("consul", "amd64", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.Files[0].Path, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Resolve("consul", "amd64", ""); !errors.Is(err, ErrHashMismatch) || !strings.Contains(err.Error(), r.Files[0].SHA256) {
		t.Errorf("Resolve over a changed cache file = %v, want ErrHashMismatch showing %s", err, r.Files[0].SHA256)
	}
}

func TestResolveK3s(t *testing.T) {
	f := newFixture(t)
	if _, err := f.store.Import("k3s", writeFile(t, "k3s", f.k3s["amd64"][RoleBinary]), k3sVersion, "", RoleBinary); err != nil {
		t.Fatal(err)
	}
	_, err := f.store.Resolve("k3s", "amd64", "")
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "k3s-images=FILE` with k3s-airgap-images-amd64.tar.zst") {
		t.Fatalf("Resolve without the images = %v", err)
	}
	if _, err := f.store.Fetch(context.Background(), "k3s", "", "amd64"); err != nil {
		t.Fatal(err)
	}
	r, err := f.store.Resolve("k3s", "amd64", "")
	if err != nil {
		t.Fatal(err)
	}
	images, ok := r.File(RoleImages)
	if !ok || images.Origin != OriginVerified || r.Files[0].Origin != OriginImported || !r.Pinned {
		t.Errorf("Resolve = %+v", r)
	}
	if data, _ := os.ReadFile(images.Path); !bytes.Equal(data, f.k3s["amd64"][RoleImages]) {
		t.Errorf("images at %s differ", images.Path)
	}
}

func TestList(t *testing.T) {
	f := newFixture(t)
	if _, err := f.store.Fetch(context.Background(), "consul", "", "amd64"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Import("consul", writeFile(t, "consul", artifactstest.ELF("arm64", "1.22.7")), "1.22.7", "", RoleBinary); err != nil {
		t.Fatal(err)
	}
	f.store.Pins["k3s"].SHA256 = map[string]map[string]string{"amd64": {RoleImages: artifactstest.SHA256(f.k3s["amd64"][RoleImages])}}
	rows, err := f.store.List()
	if err != nil {
		t.Fatal(err)
	}
	zip, bare := artifactstest.SHA256(f.consul["amd64"]), artifactstest.SHA256(artifactstest.ELF("arm64", "1.22.7"))
	want := []Row{
		{"consul", "1.22.6", "amd64", "consul_1.22.6_linux_amd64.zip", OriginVerified, zip, true},
		{"consul", "1.22.6", "arm64", "consul_1.22.6_linux_arm64.zip", NotFetched, "", false},
		{"consul", "1.22.7", "arm64", "consul", OriginImported, bare, true},
		{"k3s", k3sVersion, "amd64", "k3s", NotFetched, "", false},
		{"k3s", k3sVersion, "amd64", "k3s-airgap-images-amd64.tar.zst", NotFetched, artifactstest.SHA256(f.k3s["amd64"][RoleImages]), false},
		{"k3s", k3sVersion, "arm64", "k3s-arm64", NotFetched, "", false},
		{"k3s", k3sVersion, "arm64", "k3s-airgap-images-arm64.tar.zst", NotFetched, "", false},
	}
	if d := cmp.Diff(want, rows); d != "" {
		t.Errorf("List -want +got:\n%s", d)
	}
	var out bytes.Buffer
	if err := f.store.WriteList(&out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"consul  1.22.6        amd64  consul_1.22.6_linux_amd64.zip    verified     " + zip[:12] + "  yes",
		"consul: the lab uses 1.22.7 (the version last named by an import or fetch, in place of the lock's 1.22.6)",
		"k3s: the lab uses v1.33.6+k3s1 (the lock's pin)",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("WriteList lacks %q:\n%s", s, out.String())
		}
	}
}
