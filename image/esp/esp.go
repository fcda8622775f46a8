// Package esp builds a machine's EFI system partition image: one FAT32
// file system that boots the kiln initramfs in boot mode under both BIOS
// (syslinux, found by gptmbr.bin through the legacy-BIOS-bootable GPT
// attribute) and UEFI (systemd-boot as the removable-media path
// \EFI\BOOT\BOOTX64.EFI). It is built as a standalone partition file with
// Debian's mkfs.vfat, syslinux (the mtools flavour) and mtools, so it needs
// neither root nor a loop device (DESIGN §7).
//
// Reproducibility: the same Options give the same bytes. mkfs.vfat 4.2 does
// not honour SOURCE_DATE_EPOCH, so it runs with --invariant (fixed times and
// volume ID) and Build then writes the derived volume ID into the boot
// sector itself; mtools (hence syslinux --install) honours SOURCE_DATE_EPOCH.
package esp

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kilnlab/kiln/image/disklayout"
	"github.com/kilnlab/kiln/image/hosttool"
)

const (
	// DefaultSize is the ESP partition size of the contract.
	DefaultSize = 128 << 20
	// DefaultLabel is the FAT volume label.
	DefaultLabel = "KILN-ESP"
	// DefaultEpoch (2024-01-01 UTC) stamps files when Options.Epoch is 0.
	DefaultEpoch = 1704067200
	// minSize: below about 33 MiB FAT32 has too few clusters to be valid.
	minSize = 34 << 20
)

// Paths of the boot files on the ESP, fixed by the contract.
const (
	KernelPath    = "/vmlinuz"
	InitrdPath    = "/initrd"
	SyslinuxCfg   = "/syslinux.cfg"
	BootloaderEFI = "/EFI/BOOT/BOOTX64.EFI"
	LoaderConf    = "/loader/loader.conf"
	EntryConf     = "/loader/entries/kiln.conf"
)

// Tools lists the host tools Build runs.
func Tools() []string { return []string{"mkfs.vfat", "syslinux", "mmd", "mcopy"} }

// Options describe one ESP.
type Options struct {
	Out string // image file to write (replaced atomically)
	// Size in bytes; 0 means DefaultSize.
	Size      int64
	Kernel    string // vmlinuz to boot
	Initramfs string // the kiln initramfs
	// Cmdline is the boot-mode kernel command line (plan.Machine.Cmdline).
	Cmdline string
	// Syslinux is the syslinux (mtools flavour) tool; "" means "syslinux".
	Syslinux string
	// SystemdBootEFI is systemd-bootx64.efi from Debian's systemd-boot-efi.
	SystemdBootEFI string
	// Label is the FAT volume label, at most 11 characters; "" means DefaultLabel.
	Label string
	// VolumeID is the FAT serial; 0 derives it from Label and Cmdline
	// (which names the machine's partitions, so it differs per machine).
	VolumeID uint32
	// Epoch (seconds since 1970) stamps every file; 0 means DefaultEpoch.
	Epoch int64
}

// Build writes the ESP image described by o.
func Build(ctx context.Context, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	if err := hosttool.Check(append(Tools(), o.Syslinux)...); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(filepath.Dir(o.Out), ".esp-")
	if err != nil {
		return fmt.Errorf("esp: %w", err)
	}
	defer os.RemoveAll(stage)
	img := filepath.Join(stage, "esp.img")
	if err := build(ctx, o, stage, img); err != nil {
		return fmt.Errorf("esp %s: %w", o.Out, err)
	}
	if err := os.Rename(img, o.Out); err != nil {
		return fmt.Errorf("esp: %w", err)
	}
	return nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.Label == "" {
		o.Label = DefaultLabel
	}
	if o.Syslinux == "" {
		o.Syslinux = "syslinux"
	}
	if o.Epoch == 0 {
		o.Epoch = DefaultEpoch
	}
	if o.VolumeID == 0 {
		sum := sha256.Sum256([]byte("kiln-esp\x00" + o.Label + "\x00" + o.Cmdline))
		o.VolumeID = binary.LittleEndian.Uint32(sum[:4])
	}
	switch {
	case o.Out == "" || o.Kernel == "" || o.Initramfs == "" || o.SystemdBootEFI == "":
		return o, errors.New("esp: Out, Kernel, Initramfs and SystemdBootEFI are required")
	case o.Size < minSize || o.Size%(1<<20) != 0:
		return o, fmt.Errorf("esp: size %d is not a whole number of MiB of at least %d", o.Size, minSize)
	case len(o.Label) > 11 || strings.ContainsAny(o.Label, "\"*+,./:;<=>?[\\]|"):
		return o, fmt.Errorf("esp: label %q is not a FAT label", o.Label)
	case strings.ContainsAny(o.Cmdline, "\n\r"):
		return o, errors.New("esp: command line holds a line break")
	}
	return o, nil
}

// build makes the image at img, using stage for the generated text files.
func build(ctx context.Context, o Options, stage, img string) error {
	f, err := disklayout.CreateSparse(img, o.Size)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	run := func(name string, args ...string) error {
		return hosttool.Run(ctx, hosttool.Cmd{Name: name, Args: args, Epoch: o.Epoch})
	}
	if err := run("mkfs.vfat", "-F", "32", "-n", o.Label, "--invariant", img); err != nil {
		return err
	}
	if err := run(o.Syslinux, "--install", img); err != nil {
		return err
	}
	if err := run("mmd", "-i", img, "::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries"); err != nil {
		return err
	}
	files, err := o.files(stage)
	if err != nil {
		return err
	}
	for _, c := range files {
		if err := run("mcopy", "-i", img, c.src, "::"+c.dest); err != nil {
			return err
		}
	}
	return finishBootSector(img, o.VolumeID)
}

type copyFile struct{ src, dest string }

// files writes the boot configurations into stage and lists everything to
// copy onto the ESP, in a fixed order (the order decides cluster layout).
func (o Options) files(stage string) ([]copyFile, error) {
	configs := []struct{ name, dest, text string }{
		{"syslinux.cfg", SyslinuxCfg, syslinuxConfig(o.Cmdline)},
		{"loader.conf", LoaderConf, "timeout 0\ndefault kiln.conf\n"},
		{"kiln.conf", EntryConf, bootEntry(o.Cmdline)},
	}
	out := []copyFile{{o.Kernel, KernelPath}, {o.Initramfs, InitrdPath}, {o.SystemdBootEFI, BootloaderEFI}}
	for _, c := range configs {
		p := filepath.Join(stage, c.name)
		if err := os.WriteFile(p, []byte(c.text), 0o644); err != nil {
			return nil, err
		}
		out = append(out, copyFile{p, c.dest})
	}
	return out, nil
}

// syslinuxConfig boots straight into the one entry; SERIAL must be the
// first directive and puts syslinux's own messages on ttyS0 too.
func syslinuxConfig(cmdline string) string {
	return "SERIAL 0 115200\nDEFAULT kiln\nPROMPT 0\nTIMEOUT 0\n\nLABEL kiln\n" +
		"  LINUX " + KernelPath + "\n  INITRD " + InitrdPath + "\n  APPEND " + cmdline + "\n"
}

func bootEntry(cmdline string) string {
	return "title kiln\nlinux " + KernelPath + "\ninitrd " + InitrdPath + "\noptions " + cmdline + "\n"
}

// FAT32 boot sector fields (Microsoft FAT specification).
const (
	offBytesPerSector = 11
	offBackupBoot     = 50
	offVolumeID       = 67
)

// finishBootSector writes the volume ID (mkfs.vfat --invariant fixed it)
// and copies the boot sector, which syslinux --install rewrote, over its
// backup, which syslinux leaves stale (fsck.vfat reports the difference).
func finishBootSector(img string, volumeID uint32) error {
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, 0); err != nil {
		return fmt.Errorf("read boot sector: %w", err)
	}
	sector := int64(binary.LittleEndian.Uint16(bs[offBytesPerSector:]))
	backup := int64(binary.LittleEndian.Uint16(bs[offBackupBoot:]))
	if sector != 512 || backup == 0 || bs[510] != 0x55 || bs[511] != 0xaa {
		return fmt.Errorf("unexpected FAT32 boot sector (sector size %d, backup at %d)", sector, backup)
	}
	binary.LittleEndian.PutUint32(bs[offVolumeID:], volumeID)
	for _, off := range []int64{0, backup * sector} {
		if _, err := f.WriteAt(bs, off); err != nil {
			return fmt.Errorf("write boot sector: %w", err)
		}
	}
	return f.Close()
}

// VolumeIDString formats a FAT serial the way blkid and mdir show it.
func VolumeIDString(id uint32) string {
	s := strings.ToUpper(strconv.FormatUint(uint64(id)|1<<32, 16))[1:]
	return s[:4] + "-" + s[4:]
}
