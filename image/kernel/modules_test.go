package kernel

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A synthetic index shaped like Debian 6.1's (depmod lists the deepest
// dependencies last).
const (
	testDep = `kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/fs/fat/fat.ko:
kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/fs/squashfs/squashfs.ko.xz:
kernel/a.ko: kernel/b.ko
kernel/b.ko: kernel/a.ko
`
	testBuiltin = "kernel/net/packet/af_packet.ko\nkernel/fs/nls/nls_base.ko\n"
	testSoftdep = "# Soft dependencies\nsoftdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c post: nothing\nsoftdep vfat pre: nls_base\n"
	testAlias   = "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\nalias pci:v00001AF4* virtio_pci\n"
)

func testDB(t *testing.T) *DB {
	t.Helper()
	db, err := ParseDB(strings.NewReader(testDep), strings.NewReader(testBuiltin), strings.NewReader(testSoftdep), strings.NewReader(testAlias))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func loadNames(c Closure) []string {
	var out []string
	for _, m := range c.Load {
		s := m.Name
		if m.Soft {
			s += "?"
		}
		out = append(out, s)
	}
	return out
}

func TestClosure(t *testing.T) {
	db := testDB(t)
	for _, tc := range []struct {
		name        string
		wanted      []string
		load        []string // "?" marks soft
		builtin     []string
		wantErr     error
		errContains string
	}{
		{name: "leaf", wanted: []string{"squashfs"}, load: []string{"squashfs"}},
		{name: "virtio_pci in modprobe order", wanted: []string{"virtio_pci"},
			load: []string{"virtio", "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci"}},
		{name: "shared deps once", wanted: []string{"virtio_blk", "virtio_pci"},
			load: []string{"virtio", "virtio_ring", "virtio_blk", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci"}},
		{name: "softdeps via alias, before the module", wanted: []string{"ext4"},
			load: []string{"crc32c_intel?", "crc32c_generic?", "jbd2", "mbcache", "crc16", "ext4"}},
		{name: "soft made hard when wanted", wanted: []string{"ext4", "crc32c_generic"},
			load: []string{"crc32c_intel?", "crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"}},
		{name: "builtin skipped, builtin softdep ignored", wanted: []string{"af_packet", "vfat"},
			load: []string{"fat", "vfat"}, builtin: []string{"af_packet"}},
		{name: "dash and underscore are one name", wanted: []string{"crc32c-intel", "virtio-blk"},
			load: []string{"crc32c_intel", "virtio", "virtio_ring", "virtio_blk"}},
		{name: "unknown", wanted: []string{"virtio_blk", "nope"}, wantErr: ErrUnknownModule},
		{name: "cycle", wanted: []string{"a"}, errContains: "cycle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := db.Closure(tc.wanted)
			if tc.wantErr != nil || tc.errContains != "" {
				if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.errContains) {
					t.Fatalf("err = %v, want %v %q", err, tc.wantErr, tc.errContains)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.load, loadNames(c)); d != "" {
				t.Errorf("load -want +got:\n%s", d)
			}
			if d := cmp.Diff(tc.builtin, c.Builtin); d != "" {
				t.Errorf("builtin -want +got:\n%s", d)
			}
		})
	}
}

func TestDepFile(t *testing.T) {
	db := testDB(t)
	c, err := db.Closure([]string{"vfat", "squashfs"})
	if err != nil {
		t.Fatal(err)
	}
	want := "kernel/fs/fat/fat.ko:\nkernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\nkernel/fs/squashfs/squashfs.ko.xz:\n"
	if d := cmp.Diff(want, db.DepFile(c)); d != "" {
		t.Errorf("-want +got:\n%s", d)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/arch/x86/crypto/crc32c-intel.ko": "crc32c_intel",
		"kernel/fs/squashfs/squashfs.ko.xz":      "squashfs",
		"nvme-core":                              "nvme_core",
		"x.ko.zst":                               "x",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseDB(f *testing.F) {
	f.Add(testDep, testSoftdep, testAlias)
	f.Fuzz(func(t *testing.T, dep, soft, alias string) {
		db, err := ParseDB(strings.NewReader(dep), strings.NewReader(testBuiltin), strings.NewReader(soft), strings.NewReader(alias))
		if err != nil {
			return
		}
		var names []string
		for n := range db.paths {
			names = append(names, n)
		}
		_, _ = db.Closure(names)
	})
}
