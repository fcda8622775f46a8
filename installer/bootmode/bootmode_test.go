package bootmode

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/kilnlab/kiln/image/disklayout"
	"github.com/kilnlab/kiln/installer/disks/diskstest"
	"github.com/kilnlab/kiln/plan"
)

const mib = 1 << 20

func TestFind(t *testing.T) {
	sys := diskstest.New(t,
		diskstest.Disk{Name: "vda", Size: 16 * mib},
		diskstest.Disk{Name: "vdb", Size: 32 * mib, Attrs: map[string]string{"vdb1/partition": "1\n", "vdb2/partition": "2\n", "vdb2/size": "0\n"}},
	)
	l := &plan.Layout{DiskGUID: "11111111-2222-5333-8444-555555555555", SectorSize: 512, Partitions: []plan.Partition{
		{Number: 1, Name: "kiln-root", Type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", GUID: "aaaaaaaa-2222-5333-8444-555555555555", Start: mib, Size: 8 * mib},
		{Number: 2, Name: "kiln-state", Type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", GUID: "bbbbbbbb-2222-5333-8444-555555555555", Start: 9 * mib, Size: 8 * mib},
	}}
	f, err := os.OpenFile(filepath.Join(sys.DevRoot, "vdb"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := disklayout.Write(context.Background(), f, 32*mib, l, nil); err != nil {
		t.Fatal(err)
	}
	f.Close()

	for uuid, want := range map[string]string{
		"AAAAAAAA-2222-5333-8444-555555555555": filepath.Join(sys.DevRoot, "vdb1"),
		"bbbbbbbb-2222-5333-8444-555555555555": filepath.Join(sys.DevRoot, "vdb2"),
	} {
		got, err := Find(sys, uuid)
		if err != nil || got != want {
			t.Errorf("Find(%s) = %q, %v; want %q", uuid, got, err, want)
		}
	}
	if _, err := Find(sys, "cccccccc-2222-5333-8444-555555555555"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find(absent) = %v, want ErrNotFound", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WaitFind(ctx, sys, "cccccccc-2222-5333-8444-555555555555", 1); !errors.Is(err, ErrNotFound) || !errors.Is(err, context.Canceled) {
		t.Errorf("WaitFind(cancelled) = %v", err)
	}
}

func TestMounts(t *testing.T) {
	got := Mounts("/dev/vda2", "/dev/vda3", "/newroot")
	want := []Mount{
		{Source: "/dev/vda2", Target: "/newroot", FSType: "squashfs", Flags: unix.MS_RDONLY, Mkdir: []string{"/newroot"}},
		{Source: "/dev/vda3", Target: "/newroot/kiln/state", FSType: "ext4", Flags: unix.MS_NOATIME},
		{Source: "overlay", Target: "/newroot/etc", FSType: "overlay",
			Data:  "lowerdir=/newroot/etc,upperdir=/newroot/kiln/state/etc/upper,workdir=/newroot/kiln/state/etc/work",
			Mkdir: []string{"/newroot/kiln/state/etc/upper", "/newroot/kiln/state/etc/work"}},
		{Source: "overlay", Target: "/newroot/var", FSType: "overlay",
			Data:  "lowerdir=/newroot/var,upperdir=/newroot/kiln/state/var/upper,workdir=/newroot/kiln/state/var/work",
			Mkdir: []string{"/newroot/kiln/state/var/upper", "/newroot/kiln/state/var/work"}},
		{Source: "tmpfs", Target: "/newroot/tmp", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=1777"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Mounts() (-want +got):\n%s", d)
	}
}
