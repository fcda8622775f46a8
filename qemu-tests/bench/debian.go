// Package bench owns `make bench`'s comparison of the gate appliance with
// a Debian arm64 systemd boot of the same kernel in the same QEMU VM shape:
// time from kernel start to serving (gate) or multi-user.target (Debian),
// and memory in use once settled. The Debian side is a mmdebstrap rootfs
// (cached) on an ext4 virtio disk, reached through the stand-in initramfs
// (package standin, mode root: load virtio_blk + ext4, switch_root to
// systemd); a unit prints markers and /proc/meminfo figures to the console.
package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kilnlab/kiln/image/kernel"
)

// Debian rootfs: bookworm arm64 with systemd as init and udev (which loads
// the modules of the VM's devices), nothing else.
var (
	debianSuite  = "bookworm"
	debianMirror = "http://deb.debian.org/debian"
	debianArgs   = []string{"--variant=apt", "--arch=arm64", "--include=systemd-sysv,udev,kmod"}
)

// Console markers of the Debian side's unit.
const (
	MarkMultiUser = "KILN-DEBIAN-MULTIUSER"
	MarkMem       = "KILN-DEBIAN-MEM"
)

// reportScript runs once multi-user.target is reached: uptime then, and
// memory after kiln.bench.settle seconds, then powers off.
const reportScript = `#!/bin/sh
# kiln bench: multi-user.target reached; memory once settled.
up() { read u _ < /proc/uptime; echo "$u"; }
echo "` + MarkMultiUser + ` uptime=$(up)"
settle=20
for f in $(cat /proc/cmdline); do case "$f" in kiln.bench.settle=*) settle="${f#*=}";; esac; done
sleep "$settle"
while read k v _; do case "$k" in MemTotal:) t=$v;; MemAvailable:) a=$v;; esac; done < /proc/meminfo
echo "` + MarkMem + ` total_kb=$t available_kb=$a uptime=$(up)"
systemctl poweroff --no-block
`

const reportUnit = `[Unit]
Description=kiln bench: report reaching multi-user.target
After=multi-user.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/kiln-bench-report
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
`

// RootfsTar returns the cached Debian arm64 rootfs tarball under dir,
// running mmdebstrap (foreign arch: qemu-user-static + binfmt-support)
// when it is absent: ~12 min on 2 cores, once.
func RootfsTar(ctx context.Context, dir string, log *slog.Logger) (string, error) {
	key := sha256.Sum256([]byte(strings.Join(append([]string{debianSuite, debianMirror}, debianArgs...), "\n")))
	tar := filepath.Join(dir, "debian-"+debianSuite+"-arm64-"+hex.EncodeToString(key[:6])+".tar")
	if _, err := os.Stat(tar); err == nil {
		return tar, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// mmdebstrap runs arm64 maintainer scripts through qemu-user.
	if err := enableBinfmt(ctx); err != nil {
		return "", err
	}
	// mmdebstrap picks its output format from the name's extension: the
	// partial file must end in .tar too (a ".tar.part" became a
	// directory, which tar then refused).
	tmp := strings.TrimSuffix(tar, ".tar") + ".part.tar"
	args := append(append([]string{}, debianArgs...), debianSuite, tmp, debianMirror)
	log.Info("building the Debian arm64 rootfs (once)", "cmd", "mmdebstrap "+strings.Join(args, " "), "out", tar)
	cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("mmdebstrap: %w", err)
	}
	return tar, os.Rename(tmp, tar)
}

// binfmtAArch64 is the kernel's arm64 handler, which qemu-user-static's
// package registers through binfmt-support.
const binfmtAArch64 = "/proc/sys/fs/binfmt_misc/qemu-aarch64"

// enableBinfmt makes sure arm64 programs run through qemu-user: on a
// machine without systemd nothing registers the handler at boot (nor
// mounts binfmt_misc), so this does what systemd-binfmt would.
func enableBinfmt(ctx context.Context) error {
	if _, err := os.Stat(binfmtAArch64); err == nil {
		return nil
	}
	if _, err := os.Stat("/proc/sys/fs/binfmt_misc/register"); err != nil {
		if err := command(ctx, "mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"); err != nil {
			return fmt.Errorf("mount binfmt_misc: %w", err)
		}
	}
	if err := command(ctx, "update-binfmts", "--enable", "qemu-aarch64"); err != nil {
		return fmt.Errorf("no binfmt handler for arm64 (apt-get install qemu-user-static binfmt-support): %w", err)
	}
	if _, err := os.Stat(binfmtAArch64); err != nil {
		return fmt.Errorf("update-binfmts --enable qemu-aarch64 registered no handler: %w", err)
	}
	return nil
}

// DebianDisk writes out, an ext4 image of the rootfs tarball plus k's
// modules (as an installed Debian has them) and the report unit. Building
// it from a directory needs root (device nodes, owners), not a loop device.
func DebianDisk(ctx context.Context, tar string, k *kernel.Kernel, out string) error {
	root, err := os.MkdirTemp(filepath.Dir(out), ".debian-root-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	if err := command(ctx, "tar", "-xpf", tar, "--numeric-owner", "-C", root); err != nil {
		return err
	}
	mods := filepath.Join(root, "usr", "lib", "modules")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		return err
	}
	if err := command(ctx, "cp", "-a", k.ModulesDir(), mods+"/"); err != nil {
		return err
	}
	files := []struct {
		path, data string
		mode       os.FileMode
	}{
		{"usr/local/sbin/kiln-bench-report", reportScript, 0o755},
		{"etc/systemd/system/kiln-bench.service", reportUnit, 0o644},
		{"etc/hostname", "debian-bench\n", 0o644},
		// A machine ID: no first-boot path (systemd-firstboot) in the way.
		{"etc/machine-id", "4b494c4e62656e636864656269616e31\n", 0o444},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(root, f.path), []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return err
	}
	if err := os.Symlink("/etc/systemd/system/kiln-bench.service", filepath.Join(wants, "kiln-bench.service")); err != nil {
		return err
	}
	size, err := treeSize(root)
	if err != nil {
		return err
	}
	os.Remove(out)
	// Room to spare: journald and apt's first run write a little.
	return command(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-L", "debian", "-d", root, out, fmt.Sprintf("%dk", size/1024*5/4+256<<10))
}

// treeSize is the apparent size of the files under root.
func treeSize(root string) (int64, error) {
	out, err := exec.Command("du", "-sb", root).Output()
	if err != nil {
		return 0, fmt.Errorf("du %s: %w", root, err)
	}
	var n int64
	_, err = fmt.Sscan(string(out), &n)
	return n, err
}

func command(ctx context.Context, name string, args ...string) error {
	b, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	return nil
}
