package moddep

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A slice of Debian 6.1's modules.dep (the order in which §7 of the design
// found finit_module must load them).
const dep = `kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/fs/squashfs/squashfs.ko:
kernel/fs/overlayfs/overlay.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
`

func names(ms []Module) []string {
	var out []string
	for _, m := range ms {
		out = append(out, Name(m.Path))
	}
	return out
}

func TestOrder(t *testing.T) {
	mods, err := Parse(strings.NewReader(dep))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Order(mods, []string{"virtio_pci", "virtio-blk", "squashfs", "overlay"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring", "virtio", "virtio_pci", "virtio_blk", "squashfs", "overlay"}
	if d := cmp.Diff(want, names(got)); d != "" {
		t.Errorf("Order() (-want +got):\n%s", d)
	}

	all, err := Order(mods, nil)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range all {
		pos[m.Path] = i
	}
	if len(all) != len(mods) {
		t.Errorf("Order(nil) has %d modules, want %d", len(all), len(mods))
	}
	for _, m := range all {
		for _, d := range m.Deps {
			if pos[d] > pos[m.Path] {
				t.Errorf("%s before its dependency %s", m.Path, d)
			}
		}
	}

	_, err = Order(mods, []string{"nosuch", "ext4"})
	if !errors.Is(err, ErrUnknown) {
		t.Errorf("Order(nosuch) = %v, want ErrUnknown", err)
	}
}

func TestFormatRoundTrip(t *testing.T) {
	mods, err := Parse(strings.NewReader(dep))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Format(&b, mods); err != nil {
		t.Fatal(err)
	}
	if b.String() != dep {
		t.Errorf("Format() =\n%s\nwant\n%s", b.String(), dep)
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := Parse(strings.NewReader("no colon here\n")); err == nil {
		t.Error("Parse() accepted a line without a colon")
	}
	if _, err := Parse(strings.NewReader(": dep\n")); err == nil {
		t.Error("Parse() accepted a line without a path")
	}
}

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/block/virtio_blk.ko":  "virtio_blk",
		"kernel/drivers/net/virtio_net.ko.xz": "virtio_net",
		"kernel/drivers/scsi/sd-mod.ko.zst":   "sd_mod",
		"kernel/drivers/ata/ahci.ko":          "ahci",
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzOrder(f *testing.F) {
	f.Add(dep)
	f.Add("a.ko: b.ko\nb.ko: a.ko\n")
	f.Fuzz(func(t *testing.T, s string) {
		mods, err := Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		_, _ = Order(mods, nil)
	})
}
