package kilnsrc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"github.com/kilnlab/kiln/image/initramfs"
)

func TestModuleVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":                             "v1.2.3",
		"v0.0.0-20261205130000-abcdef123456": "v0.0.0-20261205130000-abcdef123456",
		"(devel)":                            "",
		"":                                   "",
		"v0.0.0-20261205130000-abcdef123456+dirty": "",
	} {
		if got := moduleVersion(in); got != want {
			t.Errorf("moduleVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// Find: --src first, then the checkout around the working directory;
// outside one, with no version, an error that says what to do; with no
// go command, ErrNoToolchain.
func TestFind(t *testing.T) {
	root := repoRoot(t)
	ctx := context.Background()
	empty := t.TempDir()
	for _, tc := range []struct {
		name, dir, wd, want, err string
	}{
		{name: "--src", dir: root, wd: empty, want: root},
		{name: "--src not kiln", dir: empty, wd: root, err: "no go.mod for github.com/kilnlab/kiln there"},
		{name: "inside a checkout", wd: filepath.Join(root, "image", "kilnsrc"), want: root},
		{name: "outside, no version", wd: empty, err: "pass --src DIR, or install a released kiln"},
	} {
		src, err := Find(ctx, tc.dir, tc.wd, "")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: Find = %v, want an error containing %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || src.Dir != tc.want || src.Version != "" {
			t.Errorf("%s: Find = %+v, %v; want %s", tc.name, src, err, tc.want)
		}
	}
	t.Setenv("PATH", empty)
	if _, err := Find(ctx, "", root, ""); !errors.Is(err, ErrNoToolchain) {
		t.Errorf("Find with no go on PATH = %v, want ErrNoToolchain", err)
	}
}

// TestFetchBuildsTheSame is kiln build outside a checkout: from an empty
// directory, with GOPROXY naming a local file proxy that holds kiln's
// module (this commit, as a pseudo-version) before the usual proxy,
// Find fetches the source; the programs compiled from it (kiln-firstboot
// and the installer's initramfs) are byte-identical to those compiled
// from a checkout of the same commit.
func TestFetchBuildsTheSame(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the installer twice")
	}
	root := repoRoot(t)
	ctx := context.Background()
	version := pseudoVersion(t, root)
	proxy := fileProxy(t, root, version)
	upstream := goEnv(t, "GOPROXY")
	t.Setenv("GOPROXY", "file://"+proxy+","+upstream)
	t.Setenv("GONOSUMDB", ModulePath) // a local module: no checksum database entry
	t.Setenv("GOFLAGS", "-mod=mod")

	installedKilnFetches(t, version)
	fetched, err := Find(ctx, "", t.TempDir(), version)
	if err != nil {
		t.Fatal(err)
	}
	defer fetched.Remove()
	if fetched.Version != version {
		t.Errorf("fetched %+v, want version %s", fetched, version)
	}
	checkout := worktree(t, root)
	t.Setenv("GOFLAGS", "")

	sums := map[string][2]string{}
	for i, dir := range []string{checkout, fetched.Dir} {
		out := t.TempDir()
		fb := filepath.Join(out, "kiln-firstboot")
		if err := GoBuild(ctx, dir, fb, "./installer/cmd/kiln-firstboot", "amd64"); err != nil {
			t.Fatal(err)
		}
		initrd := filepath.Join(out, "initramfs.cpio.gz")
		if err := initramfs.Build(ctx, initramfs.Options{Arch: "amd64", Out: initrd, SourceDir: dir}); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{fb, initrd} {
			s := sums[filepath.Base(f)]
			s[i] = sha256File(t, f)
			sums[filepath.Base(f)] = s
		}
	}
	for name, s := range sums {
		t.Logf("%s: checkout %s, fetched module %s", name, s[0][:16], s[1][:16])
		if s[0] != s[1] {
			t.Errorf("%s differs between the checkout and the fetched module", name)
		}
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil || !IsModule(root) {
		t.Fatalf("kiln's module root: %v", err)
	}
	return root
}

// pseudoVersion names HEAD as a module version: its commit time and hash.
func pseudoVersion(t *testing.T, root string) string {
	out := git(t, root, "log", "-1", "--format=%ct %H")
	var sec int64
	var hash string
	if _, err := fmt.Sscan(out, &sec, &hash); err != nil {
		t.Fatalf("git log: %q: %v", out, err)
	}
	return module.PseudoVersion("v0", "", time.Unix(sec, 0), hash[:12])
}

// fileProxy lays out a GOPROXY file tree holding kiln's module at version,
// zipped from HEAD with x/mod's zip (what a proxy serves).
func fileProxy(t *testing.T, root, version string) string {
	proxy := t.TempDir()
	dir := filepath.Join(proxy, ModulePath, "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var zip bytes.Buffer
	if err := modzip.CreateFromVCS(&zip, module.Version{Path: ModulePath, Version: version}, root, "HEAD", ""); err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	commit := strings.TrimSpace(git(t, root, "log", "-1", "--format=%cI"))
	info, _ := json.Marshal(map[string]string{"Version": version, "Time": commit})
	for name, data := range map[string][]byte{
		"list": []byte(version + "\n"), version + ".info": info, version + ".mod": gomod, version + ".zip": zip.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return proxy
}

// worktree is a checkout of HEAD, as a user's clone would be.
func worktree(t *testing.T, root string) string {
	dir := filepath.Join(t.TempDir(), "kiln")
	git(t, root, "worktree", "add", "--detach", dir, "HEAD")
	t.Cleanup(func() { git(t, root, "worktree", "remove", "--force", dir) })
	return dir
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

func goEnv(t *testing.T, name string) string {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func sha256File(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// installedKilnFetches installs kiln at version from the proxy (go install
// ...@version, as a user would) and runs its `kiln build` in an empty
// directory: the binary knows its version and fetches its own source.
// (The build then stops at --machines, before the long work.)
func installedKilnFetches(t *testing.T, version string) {
	bin := t.TempDir()
	cmd := exec.Command("go", "install", ModulePath+"/cmd/kiln@"+version)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install kiln@%s: %v\n%s", version, err, out)
	}
	cmd = exec.Command(filepath.Join(bin, "kiln"), "build", "--machines", "no-such-machine")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	want := "compiling kiln's programs from " + ModulePath + "@" + version
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), `no machine "no-such-machine"`) {
		t.Errorf("kiln build outside a checkout: %v\n%s\nwant %q, then the --machines error", err, out, want)
	}
}
