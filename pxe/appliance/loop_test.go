package appliance

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"

	"github.com/kilnlab/kiln/internal/roottest"
)

// TestFindLoopMBR finds a partition of a real MBR disk (a loop device
// over a file that sfdisk partitioned) by PARTUUID through the running
// kernel's sysfs. The kernel shows no PARTUUID in these uevents (as
// Debian's 6.1 on the gate), so this checks the MBR signature reading
// against sfdisk's label-id. Device nodes
// are made in a temp dir, not in the host's /dev.
func TestFindLoopMBR(t *testing.T) {
	roottest.Need(t, "the loop device test")
	hosttooltest.Need(t, "sfdisk", "losetup", "partx")
	img := filepath.Join(t.TempDir(), "card.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	table := "label: dos\nlabel-id: 0x5eed00a1\nstart=2048, size=4096, type=c\nstart=6144, type=83\n"
	sfdisk := exec.Command("sfdisk", "-q", img)
	sfdisk.Stdin = strings.NewReader(table)
	if out, err := sfdisk.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	out, err := exec.Command("losetup", "--find", "--partscan", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", loop).Run()
	// Some kernels (this machine's) have no MBR parser: partx adds the
	// partitions from user space (and fails harmlessly where the kernel
	// already did).
	exec.Command("partx", "--add", loop).Run()

	root := t.TempDir()
	if err := os.Symlink("/sys", filepath.Join(root, "sys")); err != nil {
		t.Fatal(err)
	}
	f := blockFinder{root: root, sys: Linux{}}
	// The kernel scans the new table asynchronously.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	node, err := f.wait(ctx, "5EED00A1-02", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "dev", filepath.Base(loop)+"p2"); node != want {
		t.Errorf("found %s, want %s", node, want)
	}
}
