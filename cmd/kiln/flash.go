package main

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/kilnlab/kiln/image/flash"
)

const flashHelp = `Write IMAGE (gate-1.img, or gate-1.img.xz: decompressed on the way with
xz -dc, from Debian's xz-utils) onto DEVICE, the whole disk of an SD card
(/dev/sdX, /dev/mmcblkN; /dev/disk/by-id/... links are followed). Everything
on DEVICE is overwritten, except /perm as described below.

Nothing is written when any of these rules refuses DEVICE; the error names
each rule that did:
  not a block device  DEVICE is neither a disk nor (with --force) a regular file
  a partition         DEVICE is a partition (/dev/sdb1): name the whole disk
  the running system's disk
                      /, /boot, /boot/efi or /usr is mounted from DEVICE, a
                      partition of it or a device-mapper/RAID device on it, or
                      a swap area (/proc/swaps) lives there
  mounted             DEVICE, a partition of it, or anything built on them is
                      mounted (/proc/self/mountinfo)
  in use              a device-mapper, LVM or RAID device holds DEVICE or a
                      partition of it; or the kernel refuses the exclusive
                      open (O_EXCL) that the write uses; or a regular file
                      backs a loop device; or DEVICE is IMAGE itself
  not removable       /sys/block/DEV/removable is 0 (USB card readers usually
                      say 1; an SD card in a built-in slot, device type "SD",
                      counts as removable). --force lifts this rule only.
  too small           DEVICE holds fewer bytes than IMAGE's content (the
                      message says how many are needed)
--force also allows DEVICE to be an existing regular file (an image file to
write into, e.g. for tests); it is never created.

/perm survives reflashing: when DEVICE already has a DOS partition table
with the image's disk signature (the same lab's card) and partition 2 at the
image's start and size, holding an ext4 file system, that byte range is not
written, so the gate keeps its machine states and leases; kiln flash says
so. --wipe-perm writes the image's empty /perm too.

The write goes in 4 MiB blocks (O_SYNC; all-zero blocks are written too, as
a card holds old data), with progress on stdout (bytes, percent, MiB/s, ETA:
one line redrawn on a terminal, else a line per 10%). Then fsync, BLKFLSBUF
(drop the device's cached blocks), and everything written is read back and
its sha256 compared with the image's; a difference is an error naming the
first MiB that differs. Finally the kernel is asked to re-read the partition
table (BLKRRPART).`

func runFlash(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "flash [--force] [--wipe-perm] IMAGE DEVICE", flashHelp)
	force := fs.Bool("force", false, "allow a non-removable disk, or a regular file as DEVICE (no other rule)")
	wipe := fs.Bool("wipe-perm", false, "overwrite /perm (partition 2) even on a card of the same lab")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return usagef("flash needs IMAGE and DEVICE")
	}
	res, err := flash.Flash(ctx, flash.Options{
		Image: fs.Arg(0), Device: fs.Arg(1), Force: *force, WipePerm: *wipe,
		Out: env.stdout, Terminal: isTerminal(env.stdout),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s: %d bytes written and read back, sha256 %s\n", fs.Arg(1), res.Written, res.Verified)
	if res.Kept.Len > 0 {
		fmt.Fprintf(env.stdout, "/perm kept: bytes %d..%d left as they were; image sha256 %s\n", res.Kept.Off, res.Kept.Off+res.Kept.Len-1, res.SHA256)
	}
	return nil
}

// isTerminal says whether w is a terminal, where progress redraws a line.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
