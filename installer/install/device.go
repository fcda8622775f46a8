package install

import (
	"os"

	"golang.org/x/sys/unix"
)

// rereadPartitions asks the kernel to re-read the table it was just
// given, so the first boot's udev sees by-partuuid links; a failure (a
// regular file, a busy disk) only means it happens at the next boot.
func rereadPartitions(f *os.File) {
	_ = unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
}
