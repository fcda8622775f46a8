package lock

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/debian"
	"github.com/kilnlab/kiln/image/debian/debiantest"
	"github.com/kilnlab/kiln/roles"
)

// The fetch tests serve small stand-in .debs from a local httptest server
// through the real fetch + verify code; nothing reaches the internet.

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// standIns serves three small files and returns a lock pinning them.
func standIns(m *debiantest.Mirror) *File {
	set := &Set{Spec: Spec{Name: "boot-amd64", Arch: "amd64", Mode: ModeExact}}
	for _, name := range []string{"ipxe", "syslinux-common", "systemd-boot-efi"} {
		data := []byte("stand-in .deb for " + name)
		fn := fmt.Sprintf("pool/main/%c/%s/%s_1.0_all.deb", name[0], name, name)
		m.Files["/debian/"+fn] = data
		set.Roots = append(set.Roots, name)
		set.Packages = append(set.Packages, Pin{Package: name, Version: "1:1.0", Arch: "all", Filename: fn, Size: int64(len(data)), SHA256: sum(data)})
	}
	return &File{Format: Format, Mirror: m.URL + "/debian", Suite: "bookworm", Sets: map[string]*Set{"boot-amd64": set}}
}

func TestFetchWarmCacheIsOffline(t *testing.T) {
	m := debiantest.NewMirror(t)
	f := standIns(m)
	var progress bytes.Buffer
	c := &cache.Cache{Dir: t.TempDir(), Progress: &progress}
	ctx := context.Background()

	got, err := Fetch(ctx, c, f, "boot-amd64")
	if err != nil {
		t.Fatal(err)
	}
	if n := m.Requests.Load(); n != 3 {
		t.Errorf("cold fetch: %d requests, want 3", n)
	}
	for i, l := range got {
		data, _ := os.ReadFile(l.Path)
		if l.Package != f.Sets["boot-amd64"].Packages[i].Package || string(data) != "stand-in .deb for "+l.Package {
			t.Errorf("local %d = %+v (%q)", i, l, data)
		}
	}
	if !strings.Contains(progress.String(), "fetch ipxe_1%3a1.0_all.deb: 22 B / 22 B (100%)") ||
		!strings.Contains(progress.String(), "set boot-amd64: 3 files") {
		t.Errorf("progress:\n%s", progress.String())
	}

	if _, err := Fetch(ctx, c, f, "boot-amd64"); err != nil {
		t.Fatal(err)
	}
	if n := m.Requests.Load(); n != 3 {
		t.Errorf("warm fetch made %d more requests, want 0", n-3)
	}
	m.Close()
	warm, err := Fetch(ctx, c, f, "boot-amd64")
	if err != nil {
		t.Fatalf("warm fetch with the mirror down: %v", err)
	}
	if d := cmp.Diff(got, warm); d != "" {
		t.Errorf("warm result differs:\n%s", d)
	}
	if _, err := Cached(c, f, "boot-amd64"); err != nil {
		t.Errorf("Cached: %v", err)
	}
}

func TestFetchStaleLock(t *testing.T) {
	m := debiantest.NewMirror(t)
	f := standIns(m)
	delete(m.Files, "/debian/pool/main/i/ipxe/ipxe_1.0_all.deb")
	_, err := Fetch(context.Background(), &cache.Cache{Dir: t.TempDir()}, f, "boot-amd64")
	if !errors.Is(err, cache.ErrNotFound) || !strings.Contains(err.Error(), "no longer on") || !strings.Contains(err.Error(), "kiln lock") {
		t.Errorf("Fetch = %v, want ErrNotFound telling to re-lock", err)
	}
	if _, err := Fetch(context.Background(), &cache.Cache{Dir: t.TempDir()}, f, "rootfs-x"); !errors.Is(err, ErrNoSet) {
		t.Errorf("unknown set: %v", err)
	}
}

func TestFetchRefusesTamperedMirror(t *testing.T) {
	m := debiantest.NewMirror(t)
	f := standIns(m)
	m.Files["/debian/pool/main/s/syslinux-common/syslinux-common_1.0_all.deb"] = []byte("stand-in .deb for syslinux-commoN")
	_, err := Fetch(context.Background(), &cache.Cache{Dir: t.TempDir()}, f, "boot-amd64")
	if !errors.Is(err, cache.ErrHashMismatch) {
		t.Errorf("Fetch = %v, want ErrHashMismatch", err)
	}
}

// TestDefaultLock checks the committed, embedded lock is whole.
func TestDefaultLock(t *testing.T) {
	f, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kernel-amd64", "boot-amd64", "rootfs-storage-amd64", "rootfs-compute-amd64"} {
		s, err := f.Set(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Packages) == 0 || s.Name != name {
			t.Errorf("set %s: %+v", name, s.Spec)
		}
		for _, p := range s.Packages {
			if p.Version == "" || p.Size <= 0 || len(p.SHA256) != 64 || !strings.HasPrefix(p.Filename, "pool/") ||
				(p.Arch != s.Arch && p.Arch != "all") {
				t.Errorf("set %s: bad pin %+v", name, p)
			}
		}
	}
	k, _ := f.Set("kernel-amd64")
	if len(k.Packages) != 1 || !strings.HasPrefix(k.Packages[0].Package, "linux-image-6.1.0-") {
		t.Errorf("kernel-amd64 pins %+v", k.Packages)
	}
	// The embedded lock must cover every role's package list: a role that
	// gained a package without `kiln lock` would fail to build.
	for _, role := range roles.All() {
		if !role.HasRootfs() {
			continue
		}
		name := "rootfs-" + role.Name + "-amd64"
		r, err := f.Set(name)
		if err != nil {
			t.Errorf("lock: %v", err)
			continue
		}
		for _, want := range append(role.Packages, "usr-is-merged", "apt", "dpkg", "base-files", "libc6") {
			if _, ok := r.Find(want); !ok {
				t.Errorf("%s lacks %s: run kiln lock", name, want)
			}
		}
	}
	again, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(embedded), string(again)); d != "" {
		t.Errorf("embedded lock is not in canonical form:\n%s", d)
	}
}

// TestLockFromMirror resolves specs against a synthetic suite served over
// httptest. Signature checking is image/debian's (tested there with gpgv);
// here the verifier passes the text through.
func TestLockFromMirror(t *testing.T) {
	m := debiantest.NewMirror(t)
	packages := strings.Join([]string{
		stanza("linux-image-amd64", "6.1.99-1", "amd64", "optional", "Depends: linux-image-6.1.0-99-amd64 (= 6.1.99-1)"),
		stanza("linux-image-6.1.0-99-amd64", "6.1.99-1", "amd64", "optional", "Depends: kmod"),
		stanza("kmod", "30+20221128-1", "amd64", "important", "Depends: libc6:any"),
		stanza("libc6", "2.36-9", "amd64", "required", ""),
		stanza("ipxe", "1.0-5", "all", "optional", "Depends: not-in-the-index"),
		stanza("usr-is-merged", "35", "all", "optional", ""),
	}, "\n")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(packages))
	zw.Close()
	m.Files["/debian/dists/bookworm/main/binary-amd64/Packages.gz"] = gz.Bytes()
	m.Files["/debian/dists/bookworm/InRelease"] = []byte(fmt.Sprintf(
		"Suite: oldstable\nCodename: bookworm\nVersion: 12.99\nDate: Sat, 01 Jan 2000 00:00:00 UTC\nSHA256:\n %s %d main/binary-amd64/Packages.gz\n",
		sum(gz.Bytes()), gz.Len()))

	dir := t.TempDir()
	path := filepath.Join(dir, "kiln.lock.json")
	opts := RefreshOptions{
		Options: Options{Mirror: m.URL + "/debian", Components: []string{"main"}, Verifier: passThrough{},
			Cache: &cache.Cache{Dir: filepath.Join(dir, "cache")}},
		Path: path,
		// boot-amd64 is exact: ipxe's dependency is not followed.
		Specs: []Spec{KernelSpec("amd64"), {Name: "boot-amd64", Arch: "amd64", Mode: ModeExact, Roots: []string{"ipxe"}},
			RootfsSpec("storage", "amd64", []string{"kmod"})},
	}
	ctx := context.Background()
	if err := Refresh(ctx, opts); err != nil {
		t.Fatal(err)
	}
	f, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for name, s := range f.Sets {
		for _, p := range s.Packages {
			got[name] = append(got[name], p.Package+"="+p.Version)
		}
	}
	want := map[string][]string{
		"kernel-amd64":         {"linux-image-6.1.0-99-amd64=6.1.99-1"},
		"boot-amd64":           {"ipxe=1.0-5"},
		"rootfs-storage-amd64": {"kmod=30+20221128-1", "libc6=2.36-9", "usr-is-merged=35"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("sets -want +got:\n%s", d)
	}
	if f.Release.Version != "12.99" || f.Mirror != opts.Mirror || f.Suite != "bookworm" {
		t.Errorf("lock header: %+v %+v", f.Release, f)
	}
	// Re-pinning Debian keeps the artifacts' pins (here the default's).
	def, _ := Default()
	if d := cmp.Diff(def.Artifacts, f.Artifacts); d != "" || len(f.Artifacts) == 0 {
		t.Errorf("artifacts after a re-lock -want +got:\n%s", d)
	}

	// `kiln lock` with no specs re-locks what the file holds, identically.
	first, _ := os.ReadFile(path)
	opts.Specs = nil
	if err := Refresh(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if second, _ := os.ReadFile(path); !bytes.Equal(first, second) {
		t.Errorf("re-lock changed the file:\n%s", cmp.Diff(string(first), string(second)))
	}

	opts.Specs = []Spec{RootfsSpec("x", "amd64", []string{"no-such-package"})}
	if err := Refresh(ctx, opts); !errors.Is(err, debian.ErrNoPackage) {
		t.Errorf("unknown root: %v, want ErrNoPackage", err)
	}
}

type passThrough struct{}

func (passThrough) Verify(_ context.Context, b []byte) ([]byte, error) { return b, nil }

func stanza(name, version, arch, priority, extra string) string {
	fn := "pool/main/x/" + name + "_" + version + "_" + arch + ".deb"
	s := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nPriority: %s\nFilename: %s\nSize: 1\nSHA256: %s\n",
		name, version, arch, priority, fn, sum([]byte(name)))
	if extra != "" {
		s += extra + "\n"
	}
	return s
}
