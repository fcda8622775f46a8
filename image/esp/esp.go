// Package esp builds a machine's EFI system partition image: one FAT32
// file system that boots the kiln initramfs in boot mode under both BIOS
// (syslinux, found by gptmbr.bin through the legacy-BIOS-bootable GPT
// attribute) and UEFI (systemd-boot as the removable-media path
// \EFI\BOOT\BOOTX64.EFI). It owns what goes on the ESP and the boot
// loaders' configurations; image/fatimg makes the file system (Debian's
// mkfs.vfat and mtools, no root, no loop device: DESIGN §7), and syslinux
// (the mtools flavour) installs itself into it.
//
// Reproducibility: the same Options give the same bytes (image/fatimg says
// how); the volume ID derives from the label and the command line.
package esp

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/kilnlab/kiln/image/fatimg"
	"github.com/kilnlab/kiln/image/hosttool"
)

const (
	// DefaultSize is the ESP partition size of the contract.
	DefaultSize = 128 << 20
	// DefaultLabel is the FAT volume label.
	DefaultLabel = "KILN-ESP"
	// DefaultEpoch (2024-01-01 UTC) stamps files when Options.Epoch is 0.
	DefaultEpoch = fatimg.DefaultEpoch
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
func Tools() []string { return append(fatimg.Tools(), "syslinux") }

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
	err = fatimg.Build(ctx, fatimg.Options{
		Out: o.Out, Size: o.Size, Label: o.Label, VolumeID: o.VolumeID, Epoch: o.Epoch,
		Files: o.files(),
		// syslinux goes in first: ldlinux.sys then takes the first clusters.
		AfterFormat: func(ctx context.Context, img string) error {
			return hosttool.Run(ctx, hosttool.Cmd{Name: o.Syslinux, Args: []string{"--install", img}, Epoch: o.Epoch})
		},
	})
	if err != nil {
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
	case strings.ContainsAny(o.Cmdline, "\n\r"):
		return o, errors.New("esp: command line holds a line break")
	}
	return o, nil
}

// files lists everything to copy onto the ESP, in a fixed order (the
// order decides the cluster layout).
func (o Options) files() []fatimg.File {
	return []fatimg.File{
		{Dest: KernelPath, Src: o.Kernel},
		{Dest: InitrdPath, Src: o.Initramfs},
		{Dest: BootloaderEFI, Src: o.SystemdBootEFI},
		{Dest: SyslinuxCfg, Data: []byte(syslinuxConfig(o.Cmdline))},
		{Dest: LoaderConf, Data: []byte("timeout 0\ndefault kiln.conf\n")},
		{Dest: EntryConf, Data: []byte(bootEntry(o.Cmdline))},
	}
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
