// Package standin owns the arm64 stand-ins that the lab's gate tests and
// `make bench` boot on QEMU's virt board: the pinned Debian arm64 kernel,
// unpacked once into kiln's cache; initramfs images holding one small
// static Go init (./init) and the modules it loads; and a gate-shaped SD
// image (MBR, FAT32 boot partition with vmlinuz, initrd.gz, cmdline.txt) to
// exercise the lab's gate boot without the real gate image.
package standin

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/initramfs"
	"github.com/kilnlab/kiln/image/kernel"
	"github.com/kilnlab/kiln/image/lock"
)

// KernelSet is the lockfile set holding the arm64 kernel the gate boots.
const KernelSet = "kernel-arm64"

// InitPackage is the stand-in init's Go package (see ./init).
const InitPackage = "github.com/kilnlab/kiln/qemu-tests/lab/standin/init"

// Modes of the stand-in init (kiln.standin= on the kernel command line).
const (
	// ModeGate plays the gate appliance: NIC up with kiln.standin.addr,
	// /status.json on :8080, the KILN-GATE-SERVING console marker.
	ModeGate = "gate"
	// ModeRoot mounts the ext4 disk kiln.standin.root and switch_roots to
	// its /sbin/init: a Debian boot through a minimal initramfs.
	ModeRoot = "root"
)

// GateModules are what ModeGate loads: the PCI transport, the NIC, the RNG.
func GateModules() []string {
	return []string{"virtio_pci", "virtio_net", "virtio_rng"}
}

// RootModules are what ModeRoot loads to mount an ext4 virtio disk
// (crc32c: ext4 asks the crypto API for it at mount time, not via
// modules.dep).
func RootModules() []string {
	return []string{"virtio_pci", "virtio_blk", "virtio_rng", "crc32c_generic", "ext4"}
}

// Kernel returns the pinned arm64 kernel unpacked, with its modules.dep,
// under dir (once; later calls reuse it). With fetch false it never uses the
// network: a kernel .deb missing from the cache is cache.ErrNotCached.
func Kernel(ctx context.Context, c *cache.Cache, fetch bool, dir string) (*kernel.Kernel, error) {
	return KernelOf(ctx, c, fetch, dir, KernelSet)
}

// KernelOf is Kernel for the lockfile's kernel set (kernel-arm64,
// kernel-amd64).
func KernelOf(ctx context.Context, c *cache.Cache, fetch bool, dir, set string) (*kernel.Kernel, error) {
	f, err := lock.Default()
	if err != nil {
		return nil, err
	}
	var debs []lock.Local
	if fetch {
		debs, err = lock.Fetch(ctx, c, f, set)
	} else {
		debs, err = lock.Cached(c, f, set)
	}
	if err != nil {
		return nil, err
	}
	if len(debs) != 1 {
		return nil, fmt.Errorf("standin: set %s has %d packages, want 1", set, len(debs))
	}
	root := filepath.Join(dir, set+"-"+debs[0].Pin.SHA256[:16])
	if k, err := unpacked(root); err == nil {
		return k, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(dir, "."+set+"-")
	if err != nil {
		return nil, err
	}
	if _, err := kernel.Extract(ctx, debs[0].Path, tmp); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	// Rename last: a half-unpacked tree is never mistaken for a whole one.
	if err := os.Rename(tmp, root); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return unpacked(root)
}

// unpacked is the kernel tree kernel.Extract left at root.
func unpacked(root string) (*kernel.Kernel, error) {
	rel, err := initramfs.Release(filepath.Join(root, "lib", "modules"))
	if err != nil {
		return nil, err
	}
	k := &kernel.Kernel{Version: rel, Root: root}
	if _, err := os.Stat(k.Vmlinuz()); err != nil {
		return nil, err
	}
	return k, nil
}

// BuildInit builds the stand-in init for arm64 into out (static, no cgo).
func BuildInit(ctx context.Context, out string) error {
	return BuildStatic(ctx, InitPackage, "arm64", out)
}

// BuildStatic builds the Go package pkg for linux/goarch into out, static
// (no cgo): an init for one of these initramfs images.
func BuildStatic(ctx context.Context, pkg, goarch, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, strings.TrimSpace(string(b)))
	}
	return nil
}

// Initramfs writes a gzipped newc cpio to out: init as /init, the wanted
// modules of k (and their dependencies) under /lib/modules/<release> with a
// modules.dep in load order, /dev/console and the mount points.
func Initramfs(out, init string, k *kernel.Kernel, modules []string, log *slog.Logger) error {
	return InitramfsWith(out, init, k, modules, nil, log)
}

// InitramfsWith is Initramfs with more files: path in the image -> file
// on the host (e.g. a Debian program and its libraries).
func InitramfsWith(out, init string, k *kernel.Kernel, modules []string, files map[string]string, log *slog.Logger) error {
	bin, err := os.ReadFile(init)
	if err != nil {
		return err
	}
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.Directory("run", 0o755),
		cpio.Directory("newroot", 0o755),
		cpio.StaticFile("init", string(bin), 0o755),
	}
	if len(modules) > 0 {
		mods, err := stagedModules(k, modules, log)
		if err != nil {
			return err
		}
		recs = append(recs, mods...)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := os.ReadFile(files[n])
		if err != nil {
			return err
		}
		recs = append(recs, cpio.StaticFile(strings.TrimPrefix(n, "/"), string(b), 0o755))
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	w := cpio.Newc.Writer(zw)
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		return err
	}
	if err := errors.Join(cpio.WriteTrailer(w), zw.Close()); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// stagedModules are cpio records of lib/modules/<release>/... for modules.
func stagedModules(k *kernel.Kernel, modules []string, log *slog.Logger) ([]cpio.Record, error) {
	tmp, err := os.MkdirTemp("", "kiln-standin-modules-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := initramfs.StageModules(filepath.Join(k.Root, "lib", "modules"), tmp, modules, log); err != nil {
		return nil, err
	}
	var recs []cpio.Record
	err = filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tmp, p)
		recs = append(recs, cpio.StaticFile(filepath.ToSlash(filepath.Join("lib", "modules", rel)), string(b), 0o644))
		return nil
	})
	return recs, err
}
