package flash

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fake is a made-up /proc, /sys and /dev laid out as the kernel lays them
// out: devices under sys/devices, reached through sys/block, sys/class/block
// and sys/dev/block symlinks.
type fake struct {
	t                     *testing.T
	root                  string
	mountinfo, swaps      []string
	host                  Host
	devDir, sysDir, procD string
}

func newFake(t *testing.T) *fake {
	root := t.TempDir()
	f := &fake{t: t, root: root, devDir: filepath.Join(root, "dev"), sysDir: filepath.Join(root, "sys"), procD: filepath.Join(root, "proc")}
	f.host = Host{Proc: f.procD, Sys: f.sysDir, Dev: f.devDir}
	for _, d := range []string{"dev", "sys/block", "sys/class/block", "sys/dev/block", "proc/self"} {
		f.mkdir(filepath.Join(root, d))
	}
	f.mount("26 1 254:2 / / rw,relatime - ext4 /dev/vda2 rw")
	f.mount("27 26 254:1 / /boot rw,relatime - ext4 /dev/vda1 rw")
	f.mount("21 26 0:20 / /proc rw,relatime - proc proc rw")
	f.disk("vda", "254:0", 1<<25, "0", "")
	f.part("vda", "vda1", "254:1")
	f.part("vda", "vda2", "254:2")
	return f
}

func (f *fake) mkdir(p string) {
	if err := os.MkdirAll(p, 0o755); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fake) write(p, s string) {
	f.mkdir(filepath.Dir(p))
	if err := os.WriteFile(p, []byte(s+"\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fake) link(target, p string) {
	f.mkdir(filepath.Dir(p))
	if err := os.Symlink(target, p); err != nil {
		f.t.Fatal(err)
	}
}

// device makes sys/devices/<rel>/<name> with its dev file and links.
func (f *fake) device(rel, name, dev string) string {
	dir := filepath.Join(f.sysDir, "devices", rel, name)
	f.write(filepath.Join(dir, "dev"), dev)
	f.mkdir(filepath.Join(dir, "holders"))
	f.link(dir, filepath.Join(f.sysDir, "class", "block", name))
	f.link(dir, filepath.Join(f.sysDir, "dev", "block", dev))
	f.write(filepath.Join(f.devDir, name), "")
	return dir
}

func (f *fake) disk(name, dev string, sectors int64, removable, typ string) {
	dir := f.device("platform/block", name, dev)
	f.link(dir, filepath.Join(f.sysDir, "block", name))
	f.write(filepath.Join(dir, "size"), fmt.Sprint(sectors))
	f.write(filepath.Join(dir, "removable"), removable)
	if typ != "" {
		f.write(filepath.Join(dir, "device", "type"), typ)
	}
}

func (f *fake) part(disk, name, dev string) {
	dir := f.device("platform/block/"+disk, name, dev)
	f.write(filepath.Join(dir, "partition"), "1")
}

// holder makes name (dm-0, md0) a holder of of.
func (f *fake) holder(of, name, dev string) {
	f.device("virtual/block", name, dev)
	f.link("../../"+name, filepath.Join(f.sysDir, "class", "block", of, "holders", name))
}

func (f *fake) mount(line string) { f.mountinfo = append(f.mountinfo, line) }
func (f *fake) swap(line string)  { f.swaps = append(f.swaps, line) }

// flush writes proc/self/mountinfo and proc/swaps.
func (f *fake) flush() Host {
	f.write(filepath.Join(f.procD, "self", "mountinfo"), strings.Join(f.mountinfo, "\n"))
	f.write(filepath.Join(f.procD, "swaps"), strings.Join(append([]string{"Filename\tType\tSize\tUsed\tPriority"}, f.swaps...), "\n"))
	return f.host
}

// rules lists the rules of every *Refusal in err.
func rules(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if r, ok := e.(*Refusal); ok {
			out = append(out, r.Rule.Error())
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}

func TestCheckBlock(t *testing.T) {
	const gib = 1 << 30
	sdb := DevNum{8, 16}
	for _, tc := range []struct {
		name   string
		setup  func(f *fake)
		dev    DevNum
		need   int64
		force  bool
		want   []string // rules, in Check's order
		detail string   // a piece of the message
	}{
		{name: "removable card", dev: sdb, need: gib},
		{name: "card with unmounted partitions", dev: sdb, need: gib, setup: func(f *fake) {
			f.part("sdb", "sdb1", "8:17")
			f.part("sdb", "sdb2", "8:18")
		}},
		{name: "exactly the image's size", dev: sdb, need: 16 * gib},
		{name: "mounted whole disk", dev: sdb, need: gib, want: []string{"mounted"}, detail: "sdb at /media/card", setup: func(f *fake) {
			f.mount(`40 26 8:16 / /media/card rw - vfat /dev/sdb rw`)
		}},
		{name: "mounted partition, escaped mount point", dev: sdb, need: gib, force: true, want: []string{"mounted"}, detail: "sdb2 at /media/u/KILN PERM", setup: func(f *fake) {
			f.part("sdb", "sdb1", "8:17")
			f.part("sdb", "sdb2", "8:18")
			f.mount(`41 26 8:18 / /media/u/KILN\040PERM rw - ext4 /dev/sdb2 rw`)
		}},
		{name: "btrfs: anonymous device number, by source", dev: sdb, need: gib, want: []string{"mounted"}, detail: "sdb1 at /mnt", setup: func(f *fake) {
			f.part("sdb", "sdb1", "8:17")
			f.link("../sdb1", filepath.Join(f.devDir, "disk", "by-label", "x"))
			f.mount(`42 26 0:55 / /mnt rw - btrfs /dev/disk/by-label/x rw`)
		}},
		{name: "mounted through device-mapper", dev: sdb, need: gib, want: []string{"mounted", "in use"}, detail: "dm-0 at /srv", setup: func(f *fake) {
			f.part("sdb", "sdb1", "8:17")
			f.holder("sdb1", "dm-0", "253:0")
			f.mount(`43 26 253:0 / /srv rw - ext4 /dev/mapper/data rw`)
		}},
		{name: "held by md, not mounted", dev: sdb, need: gib, want: []string{"in use"}, detail: "held by md0", setup: func(f *fake) {
			f.holder("sdb", "md0", "9:0")
		}},
		{name: "holder of a holder is mounted", dev: sdb, need: gib, want: []string{"mounted", "in use"}, detail: "dm-1 at /x", setup: func(f *fake) {
			f.holder("sdb", "md0", "9:0")
			f.holder("md0", "dm-1", "253:1")
			f.mount(`44 26 253:1 / /x rw - xfs /dev/dm-1 rw`)
		}},
		{name: "root disk", dev: DevNum{254, 0}, need: gib, force: true, want: []string{"the running system's disk"}, detail: "vda2 holds /, vda1 holds /boot"},
		{name: "root disk without force also not removable", dev: DevNum{254, 0}, need: gib, want: []string{"the running system's disk", "not removable"}},
		{name: "root on LVM on the disk", dev: sdb, need: gib, force: true, want: []string{"the running system's disk"}, detail: "dm-2 holds /", setup: func(f *fake) {
			f.part("sdb", "sdb3", "8:19")
			f.holder("sdb3", "dm-2", "253:2")
			f.mountinfo[0] = "26 1 253:2 / / rw - ext4 /dev/mapper/vg-root rw"
		}},
		{name: "swap partition", dev: sdb, need: gib, want: []string{"the running system's disk"}, detail: "sdb2 is swap", setup: func(f *fake) {
			f.part("sdb", "sdb2", "8:18")
			f.link("../../sdb2", filepath.Join(f.devDir, "disk", "by-uuid", "abc"))
			f.swap("/dev/disk/by-uuid/abc\tpartition\t1000\t0\t-2")
		}},
		{name: "swap file on the disk", dev: sdb, need: gib, want: []string{"the running system's disk"}, detail: "swap file /data/swap\\x", setup: func(f *fake) {
			f.part("sdb", "sdb1", "8:17")
			f.mount(`45 26 8:17 / /data rw - ext4 /dev/sdb1 rw`)
			f.swap(`/data/swap\134x	file	1000	0	-2`)
		}},
		{name: "swap file elsewhere", dev: sdb, need: gib, setup: func(f *fake) {
			f.swap("/swapfile\tfile\t1000\t0\t-2")
		}},
		{name: "not removable", dev: DevNum{8, 32}, need: gib, want: []string{"not removable"}, detail: "/sys/block/sdc/removable is 0 (/dev/sdc ACME Disk, 16.0 GiB)", setup: func(f *fake) {
			f.disk("sdc", "8:32", 16*gib/512, "0", "")
			f.write(filepath.Join(f.sysDir, "block", "sdc", "device", "vendor"), "ACME   ")
			f.write(filepath.Join(f.sysDir, "block", "sdc", "device", "model"), "Disk")
		}},
		{name: "not removable with force", dev: DevNum{8, 32}, need: gib, force: true, setup: func(f *fake) {
			f.disk("sdc", "8:32", 16*gib/512, "0", "")
		}},
		{name: "SD card in a built-in slot", dev: DevNum{179, 0}, need: gib, setup: func(f *fake) {
			f.disk("mmcblk0", "179:0", 16*gib/512, "0", "SD")
		}},
		{name: "eMMC", dev: DevNum{179, 8}, need: gib, want: []string{"not removable"}, setup: func(f *fake) {
			f.disk("mmcblk1", "179:8", 16*gib/512, "0", "MMC")
		}},
		{name: "too small", dev: sdb, need: 16*gib + 1, want: []string{"too small"}, detail: "it has 16.0 GiB (17179869184 bytes), the image needs 16.0 GiB (17179869185 bytes)"},
		{name: "too small even with force", dev: sdb, need: 32 * gib, force: true, want: []string{"too small"}},
		{name: "partition", dev: DevNum{8, 17}, need: gib, force: true, want: []string{"a partition, not a whole disk"}, detail: "sdb1 is a partition of /dev/sdb", setup: func(f *fake) {
			f.part("sdb", "sdb1", "8:17")
		}},
		{name: "every rule at once", dev: DevNum{8, 32}, need: 32 * gib, want: []string{"mounted", "not removable", "too small"}, setup: func(f *fake) {
			f.disk("sdc", "8:32", 16*gib/512, "0", "")
			f.mount(`40 26 8:32 / /media/x rw - vfat /dev/sdc rw`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.disk("sdb", "8:16", 16*gib/512, "1", "")
			if tc.setup != nil {
				tc.setup(f)
			}
			h := f.flush()
			_, err := h.Check(Target{Path: "/dev/x", Kind: KindBlock, Dev: tc.dev}, tc.need, tc.force)
			if diff := cmp.Diff(tc.want, rules(err)); diff != "" {
				t.Fatalf("rules (-want +got):\n%s\nerror: %v", diff, err)
			}
			if err != nil && !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("error %q does not say %q", err, tc.detail)
			}
			if err != nil && !strings.Contains(err.Error(), "refusing /dev/x (rule: ") {
				t.Errorf("error %q does not name the rule", err)
			}
		})
	}
}

func TestCheckDeviceNotInSysfs(t *testing.T) {
	h := newFake(t).flush()
	_, err := h.Check(Target{Path: "/dev/x", Kind: KindBlock, Dev: DevNum{8, 99}}, 1, true)
	if err == nil || rules(err) != nil {
		t.Fatalf("err = %v, want a plain error", err)
	}
}

func TestCheckFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		force   bool
		backing bool
		want    []string
	}{
		{name: "without force", want: []string{"not a block device"}},
		{name: "with force", force: true},
		{name: "backs a loop device", force: true, backing: true, want: []string{"in use"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			img := filepath.Join(t.TempDir(), "card.img")
			f.write(img, "x")
			if tc.backing {
				f.write(filepath.Join(f.sysDir, "block", "loop3", "loop", "backing_file"), img)
			}
			h := f.flush()
			tg, err := Inspect(img)
			if err != nil {
				t.Fatal(err)
			}
			_, err = h.Check(tg, 1<<40, tc.force)
			if diff := cmp.Diff(tc.want, rules(err)); diff != "" {
				t.Fatalf("rules (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

func TestCheckOther(t *testing.T) {
	tg, err := Inspect(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = newFake(t).flush().Check(tg, 1, true)
	if !errors.Is(err, ErrNotBlockDevice) {
		t.Fatalf("a directory: err = %v, want ErrNotBlockDevice", err)
	}
	if _, err := Inspect(filepath.Join(t.TempDir(), "sdz")); err == nil {
		t.Fatal("Inspect of a missing path succeeded")
	}
}

// TestCheckRealRootDisk asks the real host whether the disk / lives on may
// be flashed. It only reads /proc and /sys; nothing is opened for writing.
func TestCheckRealRootDisk(t *testing.T) {
	mounts, err := readMountinfo("/proc/self/mountinfo")
	if err != nil {
		t.Skip(err)
	}
	root, ok := mountOf(mounts, "/")
	if !ok || root.dev.Major == 0 {
		t.Skip("/ is not on a block device here")
	}
	var h Host
	name, err := h.nameOf(root.dev)
	if err != nil {
		t.Skip(err)
	}
	if h.exists("class", "block", name, "partition") {
		name = h.parentOf(name)
	}
	d, err := h.devNum(name)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Check(Target{Path: "/dev/" + name, Kind: KindBlock, Dev: d}, 1, true)
	if !errors.Is(err, ErrSystemDisk) {
		t.Fatalf("/dev/%s holds /: err = %v, want ErrSystemDisk", name, err)
	}
}

func TestParseMountinfo(t *testing.T) {
	got, err := parseMountinfo([]byte("36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []mount{{dev: DevNum{98, 0}, point: "/mnt 2", source: "/dev/root"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(mount{})); diff != "" {
		t.Error(diff)
	}
	for _, bad := range []string{"1 2 3", "1 2 x:y / / rw - ext4 /dev/a rw", "1 2 8:1 / / rw ext4 /dev/a rw"} {
		if _, err := parseMountinfo([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte("36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 - ext3 /dev/root rw\n"))
	f.Add([]byte("1 2 8:1 / / rw - - -\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := parseMountinfo(b)
		if err != nil {
			return
		}
		for _, m := range ms {
			mountOf(ms, m.point)
		}
	})
}
