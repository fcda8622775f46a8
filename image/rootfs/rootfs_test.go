package rootfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
	"github.com/kilnlab/kiln/image/lock"
	"github.com/kilnlab/kiln/roles"
)

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{"a": "'a'", "it's": `'it'\''s'`, "": "''", "$1 x": "'$1 x'"} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %q, want %q", in, got, want)
		}
		out, err := exec.Command("sh", "-c", "printf %s "+quote(in)).Output()
		if err != nil || string(out) != in {
			t.Errorf("sh sees %q for %q (%v)", out, in, err)
		}
	}
}

func TestMmdebstrapArgs(t *testing.T) {
	o := Options{Arch: "amd64", Suite: "bookworm", Packages: []string{"systemd", "iproute2"},
		ExtraFiles: map[string]string{"/usr/lib/kiln/kiln-firstboot": "/b/kiln-firstboot", "/etc/a b": "/src/it's"},
		Units:      []string{"kiln-firstboot.service"}}
	got := mmdebstrapArgs(o, "/s/repo", "/s/root")
	want := []string{"--variant=apt", "--mode=root", "--format=directory", "--architectures=amd64",
		`--aptopt=Acquire::Languages "none"`, `--aptopt=APT::Sandbox::User "root"`,
		"--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"}
	want = append(want, docExcludes...)
	want = append(want, "--include=systemd,iproute2",
		`--customize-hook=mkdir -p "$1"'/etc' && cp --preserve=mode '/src/it'\''s' "$1"'/etc/a b'`,
		`--customize-hook=mkdir -p "$1"'/usr/lib/kiln' && cp --preserve=mode '/b/kiln-firstboot' "$1"'/usr/lib/kiln/kiln-firstboot'`,
		`--customize-hook=mkdir -p "$1"/kiln/state`,
		`--customize-hook=chroot "$1" systemctl enable 'systemd-networkd.service' 'kiln-firstboot.service'`,
		`--customize-hook=: > "$1"/etc/machine-id`,
		`--customize-hook=rm -f "$1"/etc/hostname "$1"/etc/resolv.conf`,
		`--customize-hook=printf %s '# kiln: role images are immutable; no package sources.`+"\n"+`' > "$1"/etc/apt/sources.list`,
		"bookworm", "/s/root", "deb [trusted=yes] copy:///s/repo ./")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mmdebstrap args (-want +got):\n%s", diff)
	}
}

func TestOptionsRejected(t *testing.T) {
	base := Options{Out: "x", Arch: "amd64", Suite: "bookworm", Debs: []string{"a.deb"}}
	for name, mod := range map[string]func(*Options){
		"no debs":       func(o *Options) { o.Debs = nil },
		"no suite":      func(o *Options) { o.Suite = "" },
		"comma package": func(o *Options) { o.Packages = []string{"a,b"} },
		"relative dest": func(o *Options) { o.ExtraFiles = map[string]string{"etc/x": "/x"} },
		"unclean dest":  func(o *Options) { o.ExtraFiles = map[string]string{"/etc/../x": "/x"} },
	} {
		o := base
		mod(&o)
		if err := Build(context.Background(), o); err == nil || errors.Is(err, ErrNeedRoot) {
			t.Errorf("%s: Build = %v, want an options error", name, err)
		}
	}
}

// testDebs returns the pinned closure of the compute role's image from
// kiln's download cache (the lock built into kiln, verified). When it is
// not cached the test skips, unless KILN_NET_TESTS=1 allows fetching it
// once from the Debian mirror.
func testDebs(t *testing.T) []string {
	lk, err := lock.Default()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := cache.DefaultDir()
	if err != nil {
		t.Fatal(err)
	}
	c := &cache.Cache{Dir: dir}
	local, err := lock.Cached(c, lk, testSet)
	if err != nil {
		if os.Getenv("KILN_NET_TESTS") != "1" {
			t.Skipf("%s is not in the cache %s (%v): set KILN_NET_TESTS=1 to fetch it", testSet, dir, err)
		}
		if local, err = lock.Fetch(context.Background(), c, lk, testSet); err != nil {
			t.Fatal(err)
		}
	}
	debs := make([]string, len(local))
	for i, l := range local {
		debs[i] = l.Path
	}
	return debs
}

const testSet = "rootfs-compute-amd64"

func testPackages(t *testing.T) []string {
	r, err := roles.Lookup("compute")
	if err != nil {
		t.Fatal(err)
	}
	return r.Packages
}

func testLog(t *testing.T) io.Writer {
	if testing.Verbose() {
		return os.Stderr
	}
	return nil
}

// TestBuildOffline builds a role image from the cached .debs with no
// network (a copy:// repository) and checks it with unsquashfs. With
// KILN_REPRO_TESTS=1 it builds a second time and compares the bytes.
func TestBuildOffline(t *testing.T) {
	hosttooltest.Need(t, append(Tools(), "unsquashfs")...)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (CI runs as root)")
		}
		t.Skip("needs root")
	}
	debs := testDebs(t)
	dir := t.TempDir()
	firstboot := filepath.Join(dir, "kiln-firstboot")
	unit := filepath.Join(dir, "kiln-firstboot.service")
	if err := os.WriteFile(firstboot, []byte("#!/bin/sh\necho KILN-BOOTED\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(unit, []byte("[Service]\nType=oneshot\nExecStart=/usr/lib/kiln/kiln-firstboot\n[Install]\nWantedBy=multi-user.target\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{Debs: debs, Packages: testPackages(t), Arch: "amd64", Suite: "bookworm",
		ExtraFiles: map[string]string{"/usr/lib/kiln/kiln-firstboot": firstboot, "/usr/lib/systemd/system/kiln-firstboot.service": unit},
		Units:      []string{"kiln-firstboot.service"},
		Out:        filepath.Join(dir, "storage.squashfs"), Progress: testLog(t)}
	start := time.Now()
	if err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s: %d bytes (%.1f MiB) in %s from %d debs", o.Out, fi.Size(), float64(fi.Size())/(1<<20), time.Since(start).Round(time.Second), len(debs))

	cmd := exec.Command("unsquashfs", "-s", o.Out)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	sb, err := cmd.Output()
	if err != nil {
		t.Fatalf("unsquashfs -s: %v", err)
	}
	for _, want := range []string{"Compression zstd", "Filesystem is exportable", "Mon Jan  1 00:00:00 2024"} {
		if !bytes.Contains(sb, []byte(want)) {
			t.Errorf("unsquashfs -s lacks %q:\n%s", want, sb)
		}
	}
	ls, err := exec.Command("unsquashfs", "-lls", "-d", "", o.Out).Output()
	if err != nil {
		t.Fatalf("unsquashfs -lls: %v", err)
	}
	entries := map[string]string{}
	for _, line := range strings.Split(string(ls), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && strings.HasPrefix(f[5], "/") {
			entries[f[5]] = line
		}
	}
	for path, want := range map[string]string{
		"/usr/lib/systemd/systemd":     "-rwxr-xr-x root/root",
		"/sbin":                        "lrwxrwxrwx root/root", // merged /usr
		"/usr/sbin/init":               "lrwxrwxrwx root/root",
		"/kiln/state":                  "drwxr-xr-x root/root",
		"/usr/lib/kiln/kiln-firstboot": "-rwxr-xr-x root/root",
		"/etc/machine-id":              " root/root                 0 2024-01-01 00:00 ",
		"/usr/bin/ip":                  "-rwxr-xr-x",
		"/etc/systemd/system/multi-user.target.wants/systemd-networkd.service": "lrwxrwxrwx",
		"/etc/systemd/system/multi-user.target.wants/kiln-firstboot.service":   "lrwxrwxrwx",
	} {
		if line, ok := entries[path]; !ok || !strings.Contains(line, want) {
			t.Errorf("%s: %q, want %q", path, line, want)
		}
	}
	for _, gone := range []string{"/etc/hostname", "/etc/resolv.conf", "/var/lib/apt/lists/_s_repo_._Packages", "/usr/share/man/man1/ls.1.gz"} {
		if _, ok := entries[gone]; ok {
			t.Errorf("%s is in the image", gone)
		}
	}
	if _, ok := entries["/usr/share/doc/systemd/copyright"]; !ok {
		t.Error("copyright files were dropped")
	}

	if os.Getenv("KILN_REPRO_TESTS") != "1" {
		return
	}
	first, _ := os.ReadFile(o.Out)
	o.Out = filepath.Join(dir, "again.squashfs")
	if err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(o.Out)
	if sha256.Sum256(first) != sha256.Sum256(second) {
		t.Error("two builds of the same inputs differ")
	}
}
