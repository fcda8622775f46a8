// Package bootmode owns the installed system's early boot inside the kiln
// initramfs (kiln-init as PID 1): find the root and state partitions by
// PARTUUID in the GPT of every disk (never by /dev order), mount the
// read-only role squashfs, the ext4 state and the /etc and /var overlays
// per the contract, then switch_root to /sbin/init.
package bootmode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kilnlab/kiln/image/disklayout"
	"github.com/kilnlab/kiln/installer/disks"
)

// ErrNotFound means no disk has a partition with the wanted PARTUUID.
var ErrNotFound = errors.New("partition not found")

// Find returns the device node of the partition whose GPT unique GUID is
// partuuid, reading the table of every disk.
func Find(sys disks.System, partuuid string) (string, error) {
	ds, err := sys.List()
	if err != nil {
		return "", err
	}
	for _, d := range ds {
		n, ok := partNumber(d, partuuid)
		if !ok {
			continue
		}
		node, err := partNode(sys, d, n)
		if err != nil {
			return "", err
		}
		return node, nil
	}
	return "", fmt.Errorf("PARTUUID=%s: %w", partuuid, ErrNotFound)
}

// partNumber reads d's GPT (512-byte, then 4 KiB sectors) and returns the
// number of the partition with that GUID.
func partNumber(d disks.Disk, partuuid string) (int, bool) {
	f, err := os.Open(d.Path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	for _, ss := range []int{512, 4096} {
		l, err := disklayout.ReadLayout(f, int64(d.Size), ss)
		if err != nil {
			continue
		}
		for _, p := range l.Partitions {
			if strings.EqualFold(p.GUID, partuuid) {
				return p.Number, true
			}
		}
	}
	return 0, false
}

// partNode finds partition n of d in sysfs: the child directory whose
// "partition" attribute is n names the node (vda1, nvme0n1p1, mmcblk0p1).
func partNode(sys disks.System, d disks.Disk, n int) (string, error) {
	dir := filepath.Join(sys.SysRoot, "block", d.Name)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "partition"))
		if err != nil {
			continue
		}
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && v == n {
			return filepath.Join(sys.DevRoot, e.Name()), nil
		}
	}
	return "", fmt.Errorf("%s: partition %d has no device yet: %w", d.Name, n, ErrNotFound)
}

// WaitFind retries Find until ctx ends: disk drivers probe asynchronously
// after their modules load, so the disk may appear a moment later.
func WaitFind(ctx context.Context, sys disks.System, partuuid string, every time.Duration) (string, error) {
	for {
		node, err := Find(sys, partuuid)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return node, err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (waited: %w)", err, ctx.Err())
		case <-time.After(every):
		}
	}
}
