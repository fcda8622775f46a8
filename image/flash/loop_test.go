package flash

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"

	"github.com/kilnlab/kiln/internal/roottest"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// mkfs makes an ext2 file system on dev: every Linux kernel mounts it,
// unlike vfat, which may be a module that is missing.
func mkfs(t *testing.T, dev string) { run(t, "mke2fs", "-q", "-F", "-t", "ext2", dev) }

// mountAt mounts dev on a temporary directory until the test ends (or
// until the returned func is called).
func mountAt(t *testing.T, dev string) (dir string, unmount func()) {
	dir = t.TempDir()
	run(t, "mount", dev, dir)
	done := false
	unmount = func() {
		if !done {
			done = true
			run(t, "umount", dir)
		}
	}
	t.Cleanup(unmount)
	return dir, unmount
}

// TestFlashLoopDevice flashes a loop device this test creates on a
// temporary file, through the real /proc, /sys and /dev. It touches no
// other device: every path it writes is the one losetup printed.
func TestFlashLoopDevice(t *testing.T) {
	roottest.Need(t, "loop devices")
	hosttooltest.Need(t, "losetup", "mke2fs", "mount", "umount")
	backing := card(t, 16*mib)
	loop := run(t, "losetup", "--find", "--show", "--partscan", backing)
	t.Cleanup(func() { run(t, "losetup", "-d", loop) })
	if !strings.HasPrefix(loop, "/dev/loop") {
		t.Fatalf("losetup printed %q", loop)
	}
	img := testImage(0x5eed, 6)
	imgPath := writeFile(t, "gate-1.img", img)
	flash := func(force bool) (*Result, error) {
		var out bytes.Buffer
		res, err := Flash(context.Background(), Options{Image: imgPath, Device: loop, Force: force, Out: &out})
		t.Logf("kiln flash --force=%v %s:\n%s%v", force, loop, out.String(), err)
		return res, err
	}
	refused := func(force bool, rule error) error {
		t.Helper()
		run(t, "sync")
		before := readFile(t, backing)
		_, err := flash(force)
		if !errors.Is(err, rule) {
			t.Fatalf("--force=%v: err = %v, want %v", force, err, rule)
		}
		if !bytes.Equal(readFile(t, backing), before) {
			t.Fatal("a refused flash wrote")
		}
		return err
	}

	refused(false, ErrNotRemovable)
	if _, err := Flash(context.Background(), Options{Image: imgPath, Device: backing, Force: true}); !errors.Is(err, ErrInUse) {
		t.Fatalf("the loop device's backing file: err = %v, want ErrInUse", err)
	}

	mkfs(t, loop)
	_, unmount := mountAt(t, loop)
	refused(true, ErrMounted)
	unmount()

	res, err := flash(true)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, backing); !bytes.Equal(got[:len(img)], img) || res.Verified != sha(img) {
		t.Fatal("the loop device's file does not hold the image")
	}

	// The kernel re-read the new table (BLKRRPART), so partition 1 exists;
	// a kernel without CONFIG_MSDOS_PARTITION reads none, and partx adds
	// it from user space. Mounted, it refuses the whole disk and is named.
	p1 := loop + "p1"
	if _, err := os.Stat(p1); err != nil {
		t.Logf("no %s after BLKRRPART (%v): adding it with partx", p1, err)
		hosttooltest.Need(t, "partx")
		run(t, "partx", "-a", loop)
	}
	mkfs(t, p1)
	_, unmount = mountAt(t, p1)
	if err := refused(true, ErrMounted); !strings.Contains(err.Error(), strings.TrimPrefix(p1, "/dev/")+" at ") {
		t.Fatalf("mounted partition: %v does not name %s", err, p1)
	}
	unmount()

	// Reflashing the same lab's card keeps /perm.
	res, err = flash(true)
	if err != nil || res.Kept != permRange {
		t.Fatalf("reflash: kept %v, %v; want %v", res.Kept, err, permRange)
	}
}
