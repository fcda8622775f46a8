package standin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Layout of the stand-in SD image: the gate image's partition 1 (FAT32 at
// 4 MiB, type 0x0c), smaller, and nothing after it.
const (
	bootStart = 4 << 20
	bootSize  = 96 << 20 // FAT32 needs 65525 clusters; the kernel is ~32 MB
)

// SDImage writes a gate-shaped SD image to out: an MBR whose partition 1 is
// a FAT32 file system labelled KILN-BOOT holding files (name at the root ->
// path on the host). Only Debian tools (mkfs.vfat, mtools, sfdisk): no root,
// no loop device.
func SDImage(ctx context.Context, out string, files map[string]string) error {
	part := out + ".p1"
	os.Remove(part)
	defer os.Remove(part)
	if err := command(ctx, nil, "mkfs.vfat", "-F", "32", "-n", "KILN-BOOT", "-C", part, fmt.Sprint(bootSize>>10)); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := command(ctx, nil, "mcopy", "-o", "-i", part, files[n], "::/"+n); err != nil {
			return err
		}
	}
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	err = f.Truncate(bootStart + bootSize)
	if err == nil {
		err = copyAt(f, part, bootStart)
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	table := fmt.Sprintf("label: dos\nlabel-id: 0x4b494c4e\nstart=%d, size=%d, type=c\n", bootStart/512, bootSize/512)
	return command(ctx, strings.NewReader(table), "sfdisk", "--no-reread", "--no-tell-kernel", "-q", out)
}

// copyAt copies the file src into f at off.
func copyAt(f *os.File, src string, off int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = io.Copy(io.NewOffsetWriter(f, off), in)
	return err
}

// GateFiles are the boot partition's files for a stand-in gate: the
// kernel, the initramfs and a cmdline.txt written into dir, with the gate
// image's consoles and the stand-in's mode, address and MAC.
func GateFiles(dir, vmlinuz, initrd, addr, mac string) (map[string]string, error) {
	cmdline := filepath.Join(dir, "cmdline.txt")
	line := fmt.Sprintf("console=tty1 console=ttyS1,115200 console=ttyAMA0,115200 panic=10 kiln.standin=%s kiln.standin.addr=%s kiln.standin.mac=%s\n",
		ModeGate, addr, mac)
	if err := os.WriteFile(cmdline, []byte(line), 0o644); err != nil {
		return nil, err
	}
	return map[string]string{"vmlinuz": vmlinuz, "initrd.gz": initrd, "cmdline.txt": cmdline}, nil
}

// command runs a short tool, its output in the error.
func command(ctx context.Context, stdin io.Reader, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
