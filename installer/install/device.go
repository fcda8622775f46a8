package install

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// dropCaches makes the verification read the disk rather than the page
// cache: fsync, then BLKFLSBUF (block devices; regular files answer
// ENOTTY) and POSIX_FADV_DONTNEED (both).
func dropCaches(f *os.File) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", f.Name(), err)
	}
	fd := int(f.Fd())
	if err := unix.IoctlSetInt(fd, unix.BLKFLSBUF, 0); err != nil && !errors.Is(err, unix.ENOTTY) {
		return fmt.Errorf("BLKFLSBUF %s: %w", f.Name(), err)
	}
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("fadvise %s: %w", f.Name(), err)
	}
	return nil
}

// rereadPartitions asks the kernel to re-read the table it was just
// given, so the first boot's udev sees by-partuuid links; a failure (a
// regular file, a busy disk) only means it happens at the next boot.
func rereadPartitions(f *os.File) {
	_ = unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
}
