package disks

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kilnlab/kiln/plan"
)

const mib = 1 << 20

// fakeDisk describes one disk of a fake sysfs tree.
type fakeDisk struct {
	name   string
	size   uint64
	attrs  map[string]string // sysfs path below /sys/block/<name> -> content
	writes map[int64][]byte  // offset -> bytes written on the disk file
}

// fakeSystem builds sys/block and dev under a temp dir; disks are sparse
// regular files.
func fakeSystem(t *testing.T, disks ...fakeDisk) System {
	t.Helper()
	root := t.TempDir()
	s := System{SysRoot: filepath.Join(root, "sys"), DevRoot: filepath.Join(root, "dev")}
	mustMkdir(t, filepath.Join(s.SysRoot, "block"))
	mustMkdir(t, s.DevRoot)
	for _, d := range disks {
		dir := filepath.Join(s.SysRoot, "block", d.name)
		attrs := map[string]string{"size": strconv.FormatUint(d.size/512, 10) + "\n"}
		for k, v := range d.attrs {
			attrs[k] = v
		}
		for p, v := range attrs {
			mustMkdir(t, filepath.Dir(filepath.Join(dir, p)))
			if err := os.WriteFile(filepath.Join(dir, p), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		f, err := os.Create(filepath.Join(s.DevRoot, d.name))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(int64(d.size)); err != nil {
			t.Fatal(err)
		}
		for off, b := range d.writes {
			if _, err := f.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
	}
	return s
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func serial(s string) map[string]string { return map[string]string{"serial": s} }

func TestList(t *testing.T) {
	vpd := append([]byte{0, 0x80, 0, 12}, []byte("  ZA1B2C3D  ")...)
	s := fakeSystem(t,
		fakeDisk{name: "vda", size: 64 * mib, attrs: serial("VIRTIO-A\n")},
		fakeDisk{name: "sda", size: 128 * mib, attrs: map[string]string{
			"device/vpd_pg80": string(vpd), "device/wwid": "naa.5000c500a1b2c3d4\n"}},
		fakeDisk{name: "nvme0n1", size: 32 * mib, attrs: map[string]string{
			"device/serial": "S4EWNX0N123456  \n", "wwid": "eui.0025388b91b2c3d4\n"}},
		fakeDisk{name: "loop0", size: mib},
		fakeDisk{name: "ram0", size: mib},
		fakeDisk{name: "sr0", size: mib},
		fakeDisk{name: "zram0", size: mib},
		fakeDisk{name: "dm-0", size: mib},
		fakeDisk{name: "md127", size: mib},
	)
	got, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []Disk{
		{Name: "nvme0n1", Path: filepath.Join(s.DevRoot, "nvme0n1"), Serial: "S4EWNX0N123456", WWN: "eui.0025388b91b2c3d4", Size: 32 * mib},
		{Name: "sda", Path: filepath.Join(s.DevRoot, "sda"), Serial: "ZA1B2C3D", WWN: "naa.5000c500a1b2c3d4", Size: 128 * mib},
		{Name: "vda", Path: filepath.Join(s.DevRoot, "vda"), Serial: "VIRTIO-A", Size: 64 * mib},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("List() (-want +got):\n%s", d)
	}
}

func TestListRefusesPartitionEntry(t *testing.T) {
	s := fakeSystem(t, fakeDisk{name: "vda1", size: mib, attrs: map[string]string{"partition": "1\n"}})
	if _, err := s.List(); err == nil {
		t.Fatal("List() accepted a partition as a disk")
	}
}

func TestSelect(t *testing.T) {
	layout := &plan.Layout{SectorSize: 512, Partitions: []plan.Partition{{Number: 1, Start: mib, Size: 30 * mib}}}
	tests := []struct {
		name    string
		disks   []fakeDisk
		planned []plan.Disk
		wantErr []error // every one must be in the joined error
		want    map[string]string
	}{{
		name:    "by serial",
		disks:   []fakeDisk{{name: "vda", size: 64 * mib, attrs: serial("A")}, {name: "vdb", size: 64 * mib, attrs: serial("B")}},
		planned: []plan.Disk{{Name: "os", Serial: "B", Size: 64 * mib, Layout: layout}, {Name: "data", Serial: "A", Size: 64 * mib}},
		want:    map[string]string{"os": "vdb", "data": "vda"},
	}, {
		name:    "by wwn in profile form",
		disks:   []fakeDisk{{name: "sda", size: 64 * mib, attrs: map[string]string{"device/wwid": "naa.5000C500A1B2C3D4"}}},
		planned: []plan.Disk{{Name: "os", WWN: "0x5000c500a1b2c3d4", Size: 64 * mib}},
		want:    map[string]string{"os": "sda"},
	}, {
		name:    "missing",
		disks:   []fakeDisk{{name: "vda", size: 64 * mib, attrs: serial("A")}},
		planned: []plan.Disk{{Name: "os", Serial: "Z", Size: mib}},
		wantErr: []error{ErrDiskMissing},
	}, {
		name:    "no selector",
		disks:   []fakeDisk{{name: "vda", size: 64 * mib}},
		planned: []plan.Disk{{Name: "os", Size: mib}},
		wantErr: []error{ErrNoSelector},
	}, {
		name:    "two disks with the same serial",
		disks:   []fakeDisk{{name: "vda", size: 64 * mib, attrs: serial("A")}, {name: "vdb", size: 64 * mib, attrs: serial("A")}},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: mib}},
		wantErr: []error{ErrAmbiguousDisk},
	}, {
		name:    "serial and wwn name two different disks",
		disks:   []fakeDisk{{name: "sda", size: 64 * mib, attrs: serial("A")}, {name: "sdb", size: 64 * mib, attrs: map[string]string{"device/wwid": "naa.1234"}}},
		planned: []plan.Disk{{Name: "os", Serial: "A", WWN: "0x1234", Size: mib}},
		wantErr: []error{ErrAmbiguousDisk},
	}, {
		name:    "two planned disks on one device",
		disks:   []fakeDisk{{name: "vda", size: 64 * mib, attrs: map[string]string{"serial": "A", "wwid": "naa.99"}}},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: mib}, {Name: "data", WWN: "0x99", Size: mib}},
		wantErr: []error{ErrAmbiguousDisk},
	}, {
		name:    "smaller than the plan",
		disks:   []fakeDisk{{name: "vda", size: 16 * mib, attrs: serial("A")}},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: 64 * mib}},
		wantErr: []error{ErrDiskTooSmall},
	}, {
		name:    "layout does not fit",
		disks:   []fakeDisk{{name: "vda", size: 31 * mib, attrs: serial("A")}},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: 16 * mib, Layout: layout}},
		wantErr: []error{ErrDiskTooSmall},
	}, {
		name:    "not blank without wipe",
		disks:   []fakeDisk{{name: "vda", size: 64 * mib, attrs: serial("A"), writes: map[int64][]byte{0: []byte("hsqs")}}},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: mib}},
		wantErr: []error{ErrDiskNotBlank},
	}, {
		name:    "not blank with wipe",
		disks:   []fakeDisk{{name: "vda", size: 64 * mib, attrs: serial("A"), writes: map[int64][]byte{0: []byte("hsqs")}}},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: mib, Wipe: true}},
		want:    map[string]string{"os": "vda"},
	}, {
		name: "every disk is checked before refusing",
		disks: []fakeDisk{
			{name: "vda", size: 64 * mib, attrs: serial("A"), writes: map[int64][]byte{510: {0x55, 0xaa}}},
			{name: "vdb", size: 8 * mib, attrs: serial("B")},
		},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: mib}, {Name: "data", Serial: "B", Size: 64 * mib}, {Name: "gone", Serial: "C"}},
		wantErr: []error{ErrDiskNotBlank, ErrDiskTooSmall, ErrDiskMissing},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := fakeSystem(t, tc.disks...)
			got, err := s.Select(tc.planned)
			for _, w := range tc.wantErr {
				if !errors.Is(err, w) {
					t.Errorf("Select() error = %v, want %v", err, w)
				}
			}
			if len(tc.wantErr) > 0 {
				if got != nil {
					t.Errorf("Select() returned targets with an error: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Select(): %v", err)
			}
			m := map[string]string{}
			for _, tg := range got {
				m[tg.Plan.Name] = tg.Disk.Name
			}
			if d := cmp.Diff(tc.want, m); d != "" {
				t.Errorf("Select() (-want +got):\n%s", d)
			}
		})
	}
}

func TestSignatureSynthetic(t *testing.T) {
	ext := make([]byte, 60)
	ext[56], ext[57] = 0x53, 0xef
	tests := []struct {
		name   string
		writes map[int64][]byte
		want   string
	}{
		{"blank", nil, ""},
		{"gpt", map[int64][]byte{512: []byte("EFI PART")}, "gpt"},
		{"gpt 4k", map[int64][]byte{4096: []byte("EFI PART")}, "gpt"},
		{"gpt backup only", map[int64][]byte{8*mib - 512: []byte("EFI PART")}, "gpt (backup header)"},
		{"mbr", map[int64][]byte{510: {0x55, 0xaa}}, "mbr"},
		{"ext4", map[int64][]byte{1024: ext}, "ext2/3/4"},
		{"fat32", map[int64][]byte{82: []byte("FAT32   ")}, "vfat"},
		{"fat16", map[int64][]byte{54: []byte("FAT16   ")}, "vfat"},
		{"squashfs", map[int64][]byte{0: []byte("hsqs")}, "squashfs"},
		{"lvm2", map[int64][]byte{512: []byte("LABELONE"), 536: []byte("LVM2 001")}, "lvm2"},
		{"xfs", map[int64][]byte{0: []byte("XFSB")}, "xfs"},
		{"btrfs", map[int64][]byte{0x10040: []byte("_BHRfS_M")}, "btrfs"},
		{"swap", map[int64][]byte{4086: []byte("SWAPSPACE2")}, "swap"},
		{"luks", map[int64][]byte{0: []byte("LUKS\xba\xbe")}, "luks"},
		{"iso9660", map[int64][]byte{0x8001: []byte("CD001")}, "iso9660"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := fakeSystem(t, fakeDisk{name: "vda", size: 8 * mib, writes: tc.writes})
			f, err := os.Open(filepath.Join(s.DevRoot, "vda"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := Signature(f, 8*mib)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Signature() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSignatureRealTools makes each signature with the Debian tool that
// writes it for real, so the probe table is checked against them.
func TestSignatureRealTools(t *testing.T) {
	tests := []struct {
		name string
		tool string
		args func(path string) []string
		want string
	}{
		{"sgdisk", "sgdisk", func(p string) []string { return []string{"-o", p} }, "gpt"},
		{"sfdisk dos", "sh", func(p string) []string { return []string{"-c", "echo 'label: dos' | sfdisk -q " + p} }, "mbr"},
		{"mkfs.ext4", "mkfs.ext4", func(p string) []string { return []string{"-q", "-F", p} }, "ext2/3/4"},
		{"mkfs.vfat", "mkfs.vfat", func(p string) []string { return []string{"-F", "32", p} }, "vfat"},
		{"mkswap", "mkswap", func(p string) []string { return []string{p} }, "swap"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := exec.LookPath(tc.tool); err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s missing under CI: %v", tc.tool, err)
				}
				t.Skipf("%s missing: %v", tc.tool, err)
			}
			p := filepath.Join(t.TempDir(), "disk")
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, 64*mib); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(tc.tool, tc.args(p)...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", tc.tool, err, out)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := Signature(f, 64*mib)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Signature() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSignatureSquashfsTool(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mksquashfs missing under CI")
		}
		t.Skip("mksquashfs missing")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "root.sqfs")
	if out, err := exec.Command("mksquashfs", filepath.Join(dir), img, "-quiet", "-no-progress", "-e", "root.sqfs").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if got, _ := Signature(f, uint64(st.Size())); got != "squashfs" {
		t.Errorf("Signature() = %q, want squashfs", got)
	}
}
