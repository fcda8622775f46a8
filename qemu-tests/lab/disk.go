package lab

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ErrNotSparse is returned when the output folder's filesystem cannot hold
// a disk of the profile's size as a sparse file.
var ErrNotSparse = errors.New("filesystem does not support sparse files of this size")

// Disk is one virtual disk of a VM.
type Disk struct {
	// Name names the drive and its file (<out>/<vm>-<name>.img).
	Name string
	// Size in bytes of the blank sparse file the lab creates (e.g. 1 TB as
	// in the profile: only written blocks take space).
	Size uint64
	// Serial is what the guest sees as the disk's serial (virtio-blk:
	// /sys/block/vdX/serial, at most 20 bytes; scsi-hd: VPD page 0x80).
	Serial string
	// WWN, when set, attaches the disk as scsi-hd on virtio-scsi with this
	// world wide name (0x5000c500..., or naa.5000c500...).
	WWN string
	// Path, when set, is an existing raw image used as-is instead of a
	// blank file (e.g. a prebuilt role disk image).
	Path string
}

// createSparse makes a blank file of size bytes at path, replacing any
// previous one, and checks that it really is sparse: a 1 TB disk must not
// try to take 1 TB.
func createSparse(path string, size uint64) error {
	if size == 0 || size > 1<<62 {
		return fmt.Errorf("disk %s: bad size %d", path, size)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(int64(size)); err != nil {
		if errors.Is(err, syscall.EFBIG) {
			return fmt.Errorf("disk %s (%d bytes): %w: %v", path, size, ErrNotSparse, err)
		}
		return fmt.Errorf("disk %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && uint64(st.Blocks)*512 > min(size/2, 1<<30) {
		return fmt.Errorf("disk %s: %d bytes allocated for %d: %w", path, st.Blocks*512, size, ErrNotSparse)
	}
	return nil
}

// normalizeWWN turns a profile WWN into QEMU's wwn property (a uint64 in
// hex): "naa.5000c500a1b2c3d4" and "5000C500A1B2C3D4" become
// "0x5000c500a1b2c3d4".
func normalizeWWN(wwn string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(wwn))
	s = strings.TrimPrefix(s, "naa.")
	s = strings.TrimPrefix(s, "0x")
	if _, err := strconv.ParseUint(s, 16, 64); err != nil || len(s) != 16 {
		return "", fmt.Errorf("wwn %q: want 16 hex digits (NAA 5)", wwn)
	}
	return "0x" + s, nil
}
