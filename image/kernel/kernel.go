// Package kernel owns the Debian kernel kiln boots: it unpacks the pinned
// linux-image .deb (dpkg-deb) and makes the modules.dep the .deb does not
// ship (depmod). Package initramfs picks the modules it needs from that tree.
package kernel

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

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

func run(ctx context.Context, name string, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
