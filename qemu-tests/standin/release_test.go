package standin

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/artifacts"
	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/lock"
)

// version is the tag the stand-in release is served under, the lock's.
const version = "v1.33.6+k3s1"

// release builds the stand-in release once per test binary run.
func release(t *testing.T) (string, map[string]string) {
	t.Helper()
	if _, err := exec.LookPath("zstd"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("zstd is missing (Debian package zstd)")
		}
		t.Skip("zstd is missing (Debian package zstd)")
	}
	root := t.TempDir()
	sums, err := K3sRelease(t.Context(), filepath.Join(root, version))
	if err != nil {
		t.Fatal(err)
	}
	return root, sums
}

// TestK3sRelease checks the release's layout, its checksum lists, the
// binaries' arches, the amd64 one's label and the README in the images.
func TestK3sRelease(t *testing.T) {
	root, sums := release(t)
	dir := filepath.Join(root, version)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{"k3s", "k3s-airgap-images-amd64.tar.zst", "k3s-airgap-images-arm64.tar.zst", "k3s-arm64", "sha256sum-amd64.txt", "sha256sum-arm64.txt"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("files (-want +got):\n%s", diff)
	}
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		binary, images, list := K3sFiles(arch)
		b, _ := os.ReadFile(filepath.Join(dir, list))
		// sha256sum's lines, in name order.
		first, second := min(binary, images), max(binary, images)
		wantList := sums[first] + "  " + first + "\n" + sums[second] + "  " + second + "\n"
		if string(b) != wantList {
			t.Errorf("%s:\n%s\nwant:\n%s", list, b, wantList)
		}
		f, err := elf.Open(filepath.Join(dir, binary))
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != machine {
			t.Errorf("%s is for %v", binary, f.Machine)
		}
		f.Close()
		if r := tarREADME(t, filepath.Join(dir, images)); !strings.Contains(r, "STAND-IN") || !strings.Contains(r, arch) {
			t.Errorf("%s's README:\n%s", images, r)
		}
	}
	if runtime.GOARCH == "amd64" {
		out, err := exec.Command(filepath.Join(dir, "k3s"), "--version").Output()
		if err != nil || !strings.Contains(string(out), "STAND-IN: not Kubernetes") {
			t.Errorf("k3s --version = %q, %v", out, err)
		}
	}
	// Built twice, the release is the same bytes.
	again, err := K3sRelease(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sums, again); diff != "" {
		t.Errorf("a second build differs:\n%s", diff)
	}
}

// tarREADME is the README in a .tar.zst, decompressed by Debian's zstd.
func tarREADME(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("zstd", "-q", "-d", "-c", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(out))
	h, err := tr.Next()
	if err != nil || h.Name != "README" {
		t.Fatalf("first entry %v, %v", h, err)
	}
	b, _ := io.ReadAll(tr)
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("more than the README: %v", err)
	}
	return string(b)
}

// TestK3sReleaseFetched: kiln's own fetch and verify, pointed at the
// release on a local HTTP server, accepts both arches as verified.
func TestK3sReleaseFetched(t *testing.T) {
	root, sums := release(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(root)))
	defer srv.Close()
	s := &artifacts.Store{
		Pins: map[string]*lock.Artifact{"k3s": {
			Name: "k3s", Version: version, Source: artifacts.SourceK3s, Base: srv.URL, Arches: []string{"amd64", "arm64"},
		}},
		Cache:  &cache.Cache{Dir: t.TempDir()},
		LabDir: filepath.Join(t.TempDir(), "lab"),
	}
	for _, arch := range []string{"amd64", "arm64"} {
		got, err := s.Fetch(t.Context(), "k3s", "", arch)
		if err != nil {
			t.Fatal(err)
		}
		binary, images, _ := K3sFiles(arch)
		if len(got) != 2 || got[0].File != binary || got[1].File != images {
			t.Fatalf("%s: fetched %+v", arch, got)
		}
		for _, e := range got {
			if e.Origin != artifacts.OriginVerified || e.SHA256 != sums[e.File] {
				t.Errorf("%s: %s %s, sha256 %s; want verified, %s", arch, e.File, e.Origin, e.SHA256, sums[e.File])
			}
		}
	}
}
