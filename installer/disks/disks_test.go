package disks_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kilnlab/kiln/image/disklayout"
	"github.com/kilnlab/kiln/installer/disks"
	"github.com/kilnlab/kiln/installer/disks/diskstest"
	"github.com/kilnlab/kiln/plan"
)

const mib = 1 << 20

func TestList(t *testing.T) {
	vpd := append([]byte{0, 0x80, 0, 12}, []byte("  ZA1B2C3D  ")...)
	s := diskstest.New(t,
		diskstest.Disk{Name: "vda", Size: 64 * mib, Attrs: diskstest.Serial("VIRTIO-A\n")},
		diskstest.Disk{Name: "sda", Size: 128 * mib, Attrs: map[string]string{
			"device/vpd_pg80": string(vpd), "device/wwid": "naa.5000c500a1b2c3d4\n"}},
		diskstest.Disk{Name: "nvme0n1", Size: 32 * mib, Attrs: map[string]string{
			"device/serial": "S4EWNX0N123456  \n", "wwid": "eui.0025388b91b2c3d4\n"}},
		diskstest.Disk{Name: "loop0", Size: mib},
		diskstest.Disk{Name: "ram0", Size: mib},
		diskstest.Disk{Name: "sr0", Size: mib},
		diskstest.Disk{Name: "zram0", Size: mib},
		diskstest.Disk{Name: "dm-0", Size: mib},
		diskstest.Disk{Name: "md127", Size: mib},
	)
	got, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []disks.Disk{
		{Name: "nvme0n1", Path: filepath.Join(s.DevRoot, "nvme0n1"), Serial: "S4EWNX0N123456", WWN: "eui.0025388b91b2c3d4", Size: 32 * mib},
		{Name: "sda", Path: filepath.Join(s.DevRoot, "sda"), Serial: "ZA1B2C3D", WWN: "naa.5000c500a1b2c3d4", Size: 128 * mib},
		{Name: "vda", Path: filepath.Join(s.DevRoot, "vda"), Serial: "VIRTIO-A", Size: 64 * mib},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("List() (-want +got):\n%s", d)
	}
}

func TestListRefusesPartitionEntry(t *testing.T) {
	s := diskstest.New(t, diskstest.Disk{Name: "vda1", Size: mib, Attrs: map[string]string{"partition": "1\n"}})
	if _, err := s.List(); err == nil {
		t.Fatal("List() accepted a partition as a disk")
	}
}

func TestSelect(t *testing.T) {
	layout := &plan.Layout{SectorSize: 512, Partitions: []plan.Partition{{Number: 1, Start: mib, Size: 30 * mib}}}
	tests := []struct {
		name    string
		disks   []diskstest.Disk
		planned []plan.Disk
		wantErr []error // every one must be in the joined error
		want    map[string]string
	}{{
		name:    "by serial",
		disks:   []diskstest.Disk{{Name: "vda", Size: 64 * mib, Attrs: diskstest.Serial("A")}, {Name: "vdb", Size: 64 * mib, Attrs: diskstest.Serial("B")}},
		planned: []plan.Disk{{Name: "os", Serial: "B", Size: 64 * mib, Layout: layout}, {Name: "data", Serial: "A", Size: 64 * mib}},
		want:    map[string]string{"os": "vdb", "data": "vda"},
	}, {
		name:    "by wwn in profile form",
		disks:   []diskstest.Disk{{Name: "sda", Size: 64 * mib, Attrs: map[string]string{"device/wwid": "naa.5000C500A1B2C3D4"}}},
		planned: []plan.Disk{{Name: "os", WWN: "0x5000c500a1b2c3d4", Size: 64 * mib}},
		want:    map[string]string{"os": "sda"},
	}, {
		name:    "missing",
		disks:   []diskstest.Disk{{Name: "vda", Size: 64 * mib, Attrs: diskstest.Serial("A")}},
		planned: []plan.Disk{{Name: "os", Serial: "Z", Size: mib}},
		wantErr: []error{disks.ErrDiskMissing},
	}, {
		name:    "no selector",
		disks:   []diskstest.Disk{{Name: "vda", Size: 64 * mib}},
		planned: []plan.Disk{{Name: "os", Size: mib}},
		wantErr: []error{disks.ErrNoSelector},
	}, {
		name:    "two disks with the same serial",
		disks:   []diskstest.Disk{{Name: "vda", Size: 64 * mib, Attrs: diskstest.Serial("A")}, {Name: "vdb", Size: 64 * mib, Attrs: diskstest.Serial("A")}},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: mib}},
		wantErr: []error{disks.ErrAmbiguousDisk},
	}, {
		name:    "serial and wwn name two different disks",
		disks:   []diskstest.Disk{{Name: "sda", Size: 64 * mib, Attrs: diskstest.Serial("A")}, {Name: "sdb", Size: 64 * mib, Attrs: map[string]string{"device/wwid": "naa.1234"}}},
		planned: []plan.Disk{{Name: "os", Serial: "A", WWN: "0x1234", Size: mib}},
		wantErr: []error{disks.ErrAmbiguousDisk},
	}, {
		name:    "two planned disks on one device",
		disks:   []diskstest.Disk{{Name: "vda", Size: 64 * mib, Attrs: map[string]string{"serial": "A", "wwid": "naa.99"}}},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: mib}, {Name: "data", WWN: "0x99", Size: mib}},
		wantErr: []error{disks.ErrAmbiguousDisk},
	}, {
		name:    "smaller than the plan",
		disks:   []diskstest.Disk{{Name: "vda", Size: 16 * mib, Attrs: diskstest.Serial("A")}},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: 64 * mib}},
		wantErr: []error{disks.ErrDiskTooSmall},
	}, {
		name:    "layout does not fit",
		disks:   []diskstest.Disk{{Name: "vda", Size: 31 * mib, Attrs: diskstest.Serial("A")}},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: 16 * mib, Layout: layout}},
		wantErr: []error{disks.ErrDiskTooSmall},
	}, {
		name:    "not blank without wipe",
		disks:   []diskstest.Disk{{Name: "vda", Size: 64 * mib, Attrs: diskstest.Serial("A"), Writes: map[int64][]byte{0: []byte("hsqs")}}},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: mib}},
		wantErr: []error{disks.ErrDiskNotBlank},
	}, {
		name:    "not blank with wipe",
		disks:   []diskstest.Disk{{Name: "vda", Size: 64 * mib, Attrs: diskstest.Serial("A"), Writes: map[int64][]byte{0: []byte("hsqs")}}},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: mib, Wipe: true}},
		want:    map[string]string{"os": "vda"},
	}, {
		name: "every disk is checked before refusing",
		disks: []diskstest.Disk{
			{Name: "vda", Size: 64 * mib, Attrs: diskstest.Serial("A"), Writes: map[int64][]byte{510: {0x55, 0xaa}}},
			{Name: "vdb", Size: 8 * mib, Attrs: diskstest.Serial("B")},
		},
		planned: []plan.Disk{{Name: "os", Serial: "A", Size: mib}, {Name: "data", Serial: "B", Size: 64 * mib}, {Name: "gone", Serial: "C"}},
		wantErr: []error{disks.ErrDiskNotBlank, disks.ErrDiskTooSmall, disks.ErrDiskMissing},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := diskstest.New(t, tc.disks...)
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

// TestSelectOwnLayout: a disk whose GPT is this disk's own planned layout
// (kiln's earlier install of the machine, finished or cut short) is
// installed again without wipe; a GPT of another disk GUID is refused.
func TestSelectOwnLayout(t *testing.T) {
	own := &plan.Layout{DiskGUID: "5e0c1c52-1d1b-5f5a-9d55-00000000000a", SectorSize: 512, Partitions: []plan.Partition{
		{Number: 1, Name: "kiln-root", Type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", GUID: "5e0c1c52-1d1b-5f5a-9d55-00000000000b", Start: mib, Size: 30 * mib},
	}}
	other := *own
	other.DiskGUID = "0b0b0b0b-1d1b-5f5a-9d55-00000000000a"
	for _, tc := range []struct {
		name    string
		written *plan.Layout
		wantErr error
	}{
		{"its own layout", own, nil},
		{"another disk's layout", &other, disks.ErrDiskNotBlank},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := diskstest.New(t, diskstest.Disk{Name: "vda", Size: 64 * mib, Attrs: diskstest.Serial("A")})
			f, err := os.OpenFile(filepath.Join(s.DevRoot, "vda"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := disklayout.Write(context.Background(), f, 64*mib, tc.written, nil); err != nil {
				t.Fatal(err)
			}
			f.Close()
			got, err := s.Select([]plan.Disk{{Name: "os", Serial: "A", Size: 64 * mib, Layout: own}})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Select() = %v, want %v", err, tc.wantErr)
			}
			if err == nil && !strings.Contains(got[0].Signature, "own kiln layout") {
				t.Errorf("signature %q", got[0].Signature)
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
			s := diskstest.New(t, diskstest.Disk{Name: "vda", Size: 8 * mib, Writes: tc.writes})
			f, err := os.Open(filepath.Join(s.DevRoot, "vda"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := disks.Signature(f, 8*mib)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("disks.Signature() = %q, want %q", got, tc.want)
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
			got, err := disks.Signature(f, 64*mib)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("disks.Signature() = %q, want %q", got, tc.want)
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
	if got, _ := disks.Signature(f, uint64(st.Size())); got != "squashfs" {
		t.Errorf("disks.Signature() = %q, want squashfs", got)
	}
}
