// Package kernel owns the Debian kernel kiln boots: it unpacks the pinned
// linux-image .deb (dpkg-deb), makes the modules.dep the .deb does not ship
// (depmod), and cuts out the few modules the initramfs needs - a directory
// tree lib/modules/<ver>/ with those modules, a modules.dep restricted to
// them, and the order to load them in.
package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultModules are what kiln's initramfs loads on PCs and QEMU: virtio
// and common disk and network drivers, and the filesystems of the ESP,
// state and root partitions. Built-in ones are skipped.
func DefaultModules() []string {
	return []string{
		"virtio_pci", "virtio_blk", "virtio_net", "virtio_scsi",
		"ahci", "nvme", "sd_mod",
		"e1000", "e1000e", "r8169", "igb",
		"ext4", "vfat", "nls_cp437", "nls_ascii", "squashfs", "overlay", "af_packet",
	}
}

// Kernel is an unpacked kernel package.
type Kernel struct {
	Version string // e.g. 6.1.0-50-amd64
	Root    string // the tree dpkg-deb unpacked
}

// Vmlinuz is the kernel image's path.
func (k *Kernel) Vmlinuz() string { return filepath.Join(k.Root, "boot", "vmlinuz-"+k.Version) }

// ModulesDir is lib/modules/<ver> in the unpacked tree.
func (k *Kernel) ModulesDir() string { return filepath.Join(k.Root, "lib", "modules", k.Version) }

// Extract unpacks deb into dir (which should be empty) with dpkg-deb -x and
// runs depmod -b dir <ver>, since Debian's .deb ships no modules.dep.
func Extract(ctx context.Context, deb, dir string) (*Kernel, error) {
	if err := run(ctx, "dpkg-deb", "-x", deb, dir); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(dir, "lib", "modules"))
	if err != nil {
		return nil, fmt.Errorf("kernel: %s has no lib/modules: %w", filepath.Base(deb), err)
	}
	if len(entries) != 1 {
		return nil, fmt.Errorf("kernel: %s has %d module trees, want 1", filepath.Base(deb), len(entries))
	}
	k := &Kernel{Version: entries[0].Name(), Root: dir}
	if _, err := os.Stat(k.Vmlinuz()); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	if err := run(ctx, "depmod", "-b", dir, k.Version); err != nil {
		return nil, err
	}
	return k, nil
}

// DB reads the module index files depmod made.
func (k *Kernel) DB() (*DB, error) {
	open := func(name string, optional bool) (io.Reader, error) {
		data, err := os.ReadFile(filepath.Join(k.ModulesDir(), name))
		if optional && errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("kernel: %w", err)
		}
		return bytes.NewReader(data), nil
	}
	var files [4]io.Reader
	for i, name := range []string{"modules.dep", "modules.builtin", "modules.softdep", "modules.alias"} {
		r, err := open(name, i > 0)
		if err != nil {
			return nil, err
		}
		files[i] = r
	}
	return ParseDB(files[0], files[1], files[2], files[3])
}

// Modules resolves wanted and writes dst/lib/modules/<ver>/ with the
// closure's .ko files, a modules.dep and modules.order restricted to them,
// and the kernel's modules.builtin, so a loader can go by modules.dep.
func (k *Kernel) Modules(dst string, wanted []string) (Closure, error) {
	db, err := k.DB()
	if err != nil {
		return Closure{}, err
	}
	c, err := db.Closure(wanted)
	if err != nil {
		return Closure{}, err
	}
	return c, k.writeTree(db, c, filepath.Join(dst, "lib", "modules", k.Version))
}

func (k *Kernel) writeTree(db *DB, c Closure, out string) error {
	for _, m := range c.Load {
		if err := copyFile(filepath.Join(k.ModulesDir(), m.Path), filepath.Join(out, m.Path)); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(out, "modules.dep"), []byte(db.DepFile(c)), 0o644); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	order, err := os.ReadFile(filepath.Join(k.ModulesDir(), "modules.order"))
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, "modules.order"), []byte(filterOrder(string(order), c)), 0o644); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	return copyFile(filepath.Join(k.ModulesDir(), "modules.builtin"), filepath.Join(out, "modules.builtin"))
}

// DepFile is modules.dep for the closure only, in load order, each line's
// dependencies as depmod lists them.
func (db *DB) DepFile(c Closure) string {
	var b strings.Builder
	for _, m := range c.Load {
		b.WriteString(m.Path + ":")
		for _, d := range db.deps[m.Name] {
			b.WriteString(" " + db.paths[d])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// filterOrder keeps the lines of modules.order naming closure modules.
func filterOrder(order string, c Closure) string {
	in := map[string]bool{}
	for _, m := range c.Load {
		in[m.Path] = true
	}
	var b strings.Builder
	for _, line := range strings.Split(order, "\n") {
		if in[strings.TrimSpace(line)] {
			b.WriteString(strings.TrimSpace(line) + "\n")
		}
	}
	return b.String()
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	return nil
}

func run(ctx context.Context, name string, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
