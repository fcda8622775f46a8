package lab

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

	"github.com/kilnlab/kiln/image/gateimg"
)

// Boot files at the root of a gate SD image's boot partition (the kiln
// contracts' gate-1.img): what the Pi firmware loads, and what the lab hands
// QEMU instead.
const (
	GateKernel  = "vmlinuz"
	GateInitrd  = "initrd.gz"
	GateCmdline = "cmdline.txt"
)

// ErrNoBootPartition: the image has no MBR or no first partition.
var ErrNoBootPartition = errors.New("no MBR boot partition")

// BootFiles are the kernel, initramfs and command line of a gate image,
// copied out of its boot partition.
type BootFiles struct {
	Kernel, Initrd string // paths of the extracted files
	Cmdline        string // cmdline.txt's one line, as the firmware passes it
}

// BootPartitionOffset is the byte offset of partition 1 of an MBR disk
// image: where the Pi firmware finds its FAT boot partition.
func BootPartitionOffset(r io.ReaderAt) (int64, error) {
	var mbr [512]byte
	if _, err := r.ReadAt(mbr[:], 0); err != nil {
		return 0, fmt.Errorf("read MBR: %w", err)
	}
	m, ok := gateimg.ParseMBR(mbr[:])
	if !ok {
		return 0, fmt.Errorf("%w: no 55aa signature", ErrNoBootPartition)
	}
	p1 := m.Entries[0]
	switch {
	case p1.Type == 0 || p1.Start == 0 || p1.Sectors == 0:
		return 0, fmt.Errorf("%w: partition 1 is empty", ErrNoBootPartition)
	case p1.Type == gateimg.TypeGPTProtective:
		return 0, fmt.Errorf("%w: a GPT disk (protective MBR)", ErrNoBootPartition)
	}
	return int64(p1.Start) * gateimg.SectorSize, nil
}

// ReadGateBoot copies vmlinuz and initrd.gz out of image's boot partition
// into dir (mtools: no loop device, no root) and reads cmdline.txt.
func ReadGateBoot(ctx context.Context, image, dir string) (BootFiles, error) {
	f, err := os.Open(image)
	if err != nil {
		return BootFiles{}, err
	}
	off, err := BootPartitionOffset(f)
	f.Close()
	if err != nil {
		return BootFiles{}, fmt.Errorf("%s: %w", image, err)
	}
	b := BootFiles{Kernel: filepath.Join(dir, GateKernel), Initrd: filepath.Join(dir, GateInitrd)}
	cmdline := filepath.Join(dir, GateCmdline)
	for name, dst := range map[string]string{GateKernel: b.Kernel, GateInitrd: b.Initrd, GateCmdline: cmdline} {
		if err := mcopyOut(ctx, image, off, name, dst); err != nil {
			return BootFiles{}, err
		}
	}
	line, err := os.ReadFile(cmdline)
	if err != nil {
		return BootFiles{}, err
	}
	// The firmware passes the first line; the trailing newline is not part of it.
	b.Cmdline, _, _ = strings.Cut(strings.TrimRight(string(line), "\r\n"), "\n")
	return b, nil
}

// mcopyOut copies ::/name of the FAT file system at off in image to dst.
func mcopyOut(ctx context.Context, image string, off int64, name, dst string) error {
	cmd := exec.CommandContext(ctx, "mcopy", "-n", "-i", fmt.Sprintf("%s@@%d", image, off), "::/"+name, dst)
	// The partition need not be a whole number of mtools "tracks".
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mcopy %s from the boot partition of %s: %w: %s", name, image, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// GateVMConfig is the VM that rehearses a gate from its SD image: arm64
// virt with the kernel, initramfs and command line of the image's own boot
// partition, and a private sparse copy of the image (in dir) as its disk,
// so the built image is never written. The gate finds its partitions by
// PARTUUID, which the copy keeps.
func GateVMConfig(ctx context.Context, name, mac, image, dir string) (VMConfig, error) {
	if !vmName.MatchString(name) {
		return VMConfig{}, fmt.Errorf("lab: vm name %q: want [A-Za-z0-9._-]+", name)
	}
	bootDir := filepath.Join(dir, name+"-boot")
	if err := os.MkdirAll(bootDir, 0o755); err != nil {
		return VMConfig{}, err
	}
	b, err := ReadGateBoot(ctx, image, bootDir)
	if err != nil {
		return VMConfig{}, err
	}
	sd := filepath.Join(dir, name+"-sd.img")
	if err := run(ctx, "cp", "--sparse=always", "--", image, sd); err != nil {
		return VMConfig{}, err
	}
	return VMConfig{
		Name: name, Arch: ARM64, Firmware: Direct, MAC: mac,
		Kernel: b.Kernel, Initrd: b.Initrd, Append: b.Cmdline,
		Disks: []Disk{{Name: "sd", Path: sd}},
	}, nil
}
