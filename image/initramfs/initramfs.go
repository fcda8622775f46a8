// Package initramfs owns building kiln's initramfs (cpio.gz): u-root's init
// and a few u-root tools plus kiln-init, compiled as one busybox binary by
// u-root/mkuimage, with kiln-init as u-root's uinit (install mode) and
// reachable as /bbin/kiln-init for rdinit= (boot mode), and the kernel
// modules kiln-init loads (a closed subset of the kernel's modules with its
// own modules.dep).
//
// mkuimage resolves the command packages with `go list` inside the kiln
// module and compiles them with `go build`: the Go toolchain and the kiln
// source tree must be present where the initramfs is built (DESIGN §8).
// The cpio is reproducible (mkuimage zeroes times and inode numbers) and so
// is the gzip stream written here (no name, no time): two builds of the same
// inputs are byte-identical.
package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
)

// Commands are the Go commands in the initramfs's busybox: u-root's init
// and shell, a few tools to look around when an install fails, and
// kiln-init. Each u-root one is pinned by installer/tools.go.
var Commands = []string{
	"github.com/u-root/u-root/cmds/core/init",
	"github.com/u-root/u-root/cmds/core/gosh",
	"github.com/u-root/u-root/cmds/core/cat",
	"github.com/u-root/u-root/cmds/core/dmesg",
	"github.com/u-root/u-root/cmds/core/ip",
	"github.com/u-root/u-root/cmds/core/ls",
	"github.com/u-root/u-root/cmds/core/mount",
	"github.com/u-root/u-root/cmds/core/poweroff",
	"github.com/u-root/u-root/cmds/core/shutdown",
	KilnInit,
}

// KilnInit is kiln-init's package.
const KilnInit = "github.com/kilnlab/kiln/installer/cmd/kiln-init"

// Kiln is the kiln CLI's package: the gate's initramfs carries it whole
// and runs `kiln gate run` as u-root's uinit.
const Kiln = "github.com/kilnlab/kiln/cmd/kiln"

// GateCommands are the gate initramfs's busybox: u-root's init and the
// same look-around tools as the installer's, and kiln.
func GateCommands() []string {
	cmds := append([]string(nil), Commands[:len(Commands)-1]...)
	return append(cmds, Kiln)
}

// GateUinit is the gate's uinit command line.
var GateUinit = []string{"kiln", "gate", "run"}

// GateModules returns the modules of the gate (arm64): the Pi 4's SD
// slot (sdhci-iproc), NIC (genet with its MDIO bus and PHY) and hardware
// RNG, QEMU virt's virtio devices for the rehearsal, the file systems of
// /payload and /perm, and WireGuard.
func GateModules() []string {
	return []string{
		"sdhci_iproc", "mmc_block", "genet", "mdio_bcm_unimac", "broadcom", "iproc_rng200", "bcm2835_wdt",
		"virtio_pci", "virtio_mmio", "virtio_rng", "virtio_blk", "virtio_net",
		"af_packet", "crc32c_generic", "ext4", "squashfs", "wireguard",
	}
}

// DefaultModules returns the modules kiln-init needs on arch, in load
// order (dependencies are added by modules.dep): disk and NIC drivers of
// the machines kiln targets and of QEMU, then the filesystems of boot mode.
// crc32c_generic precedes ext4 because ext4 only soft-depends on it.
// virtio_rng feeds the kernel's CRNG: without a hardware RNG (QEMU TCG has
// no RDRAND) getrandom(2) blocks for minutes and the DHCP client with it.
func DefaultModules(arch string) []string {
	common := []string{
		"virtio_pci", "virtio_rng", "virtio_blk", "virtio_scsi", "virtio_net",
		"sd_mod", "nvme", "e1000e", "igb", "r8169", "tg3",
		"af_packet", "crc32c_generic", "ext4", "squashfs", "overlay", "vfat",
	}
	if arch == "amd64" {
		// The role OS has no modules of its own, so kiln-init loads what
		// it needs before switch_root: dm_mod for LVM (the storage role's
		// OSDs, ceph-volume lvm), bonding and 8021q for the bonds and
		// VLANs systemd-networkd makes from a profile's interfaces (amd64
		// servers only: the gate has one NIC). bonding is loaded with
		// ModuleParams' max_bonds=0. efivarfs: the installer sets a UEFI
		// machine's boot order (installer/efiboot).
		return append([]string{"ahci", "ata_piix", "e1000"}, append(common, "dm_mod", "bonding", "8021q", "efivarfs")...)
	}
	return append([]string{"mmc_block", "sdhci_iproc", "genet"}, common...)
}

// ModuleParams are the parameters kiln-init loads modules with, by module
// name; StageModules writes those of the modules it stages into
// moddep.OptionsFile. bonding gets max_bonds=0: by default loading it
// creates a bond0 of its own, which systemd-networkd then takes as it
// finds it ("netdev exists, using existing without changing its
// parameters"), in the kernel's default mode (balance-rr) rather than the
// profile's.
func ModuleParams() map[string]string {
	return map[string]string{"bonding": "max_bonds=0"}
}

// Options say what to build.
type Options struct {
	Arch string // GOARCH of the target: amd64 or arm64
	Out  string // path of the cpio.gz to write
	// ModulesDir is a lib/modules tree: it holds one <kernel release>
	// directory with a modules.dep (`depmod -b` makes it when the kernel
	// .deb has none). Empty: no modules.
	ModulesDir string
	// Modules are the modules to include with their dependencies; nil
	// means DefaultModules(Arch). Names absent from modules.dep (built
	// in, or another arch) are skipped with a log line.
	Modules []string
	// Commands are the busybox's command packages; nil means Commands.
	Commands []string
	// Uinit is u-root's uinit command line; nil means kiln-init.
	Uinit []string
	// ExtraFiles are more files, "host/path:archive/path" as mkuimage
	// takes them.
	ExtraFiles []string
	// SourceDir is the kiln module's root (where `go list` runs); empty
	// means the module of the current directory.
	SourceDir string
	Log       *slog.Logger
}

// Build writes the initramfs to o.Out.
func Build(ctx context.Context, o Options) error {
	if o.Arch == "" || o.Out == "" {
		return errors.New("initramfs: Arch and Out are required")
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	src, err := sourceDir(ctx, o.SourceDir)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "kiln-initramfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	files := append([]string(nil), o.ExtraFiles...)
	if o.ModulesDir != "" {
		want := o.Modules
		if want == nil {
			want = DefaultModules(o.Arch)
		}
		stage := filepath.Join(tmp, "modules")
		if err := StageModules(o.ModulesDir, stage, want, log); err != nil {
			return err
		}
		files = append(files, stage+":lib/modules")
	}
	cpioPath := filepath.Join(tmp, "initramfs.cpio")
	env := golang.Default(golang.DisableCGO(), golang.WithGOARCH(o.Arch), golang.WithGOOS("linux"), golang.WithWorkingDir(src))
	cmds, uinit := o.Commands, o.Uinit
	if cmds == nil {
		cmds = Commands
	}
	if uinit == nil {
		uinit = []string{"kiln-init"}
	}
	l := llog.New(slog.LevelInfo, func(format string, v ...any) { log.Info(fmt.Sprintf(format, v...)) })
	err = uimage.Create(l,
		uimage.WithReplaceEnv(env),
		uimage.WithBaseArchive(uimage.DefaultRamfs()),
		uimage.WithBusyboxBuildOpts(busyboxBuildOpts()),
		uimage.WithBusyboxCommands(cmds...),
		uimage.WithInit("init"),
		uimage.WithUinit(uinit[0], uinit[1:]...),
		uimage.WithShell("gosh"),
		uimage.WithFiles(files...),
		uimage.WithSkipLDD(),
		uimage.WithTempDir(tmp),
		uimage.WithCPIOOutput(cpioPath),
	)
	if err != nil {
		return fmt.Errorf("initramfs: mkuimage: %w", err)
	}
	return gzipFile(cpioPath, o.Out)
}

// busyboxBuildOpts are gobusybox's defaults (stripped, no build ID) plus
// the Go toolchain's own GODEBUG defaults. gobusybox compiles the commands
// in a generated module whose go directive predates Go 1.21, so the binary
// would get Go 1.20's behaviour (found on the gate: httpmuxgo121=1 made
// net/http's "GET /path" patterns literal and every request a 404;
// asynctimerchan=1, panicnil=1 and old TLS defaults came with it).
// An empty runtime.godebugDefault means: this toolchain's defaults, which
// kiln's go.mod asks for.
func busyboxBuildOpts() *golang.BuildOpts {
	return &golang.BuildOpts{
		NoStrip:   true, // the ldflags below strip, and add the GODEBUG reset
		ExtraArgs: []string{"-ldflags=-s -w -buildid= -X=runtime.godebugDefault="},
	}
}

// sourceDir finds the kiln module root.
func sourceDir(ctx context.Context, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "env", "GOMOD")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("initramfs: go env GOMOD (is the Go toolchain installed?): %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("initramfs: not inside the kiln module (set Options.SourceDir)")
	}
	return filepath.Dir(mod), nil
}

// gzipFile compresses src into dst with no name and no time in the
// header, so equal inputs give equal bytes.
func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := io.Copy(zw, in); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
