package moddep

import (
	"bytes"
	"errors"
	"io"
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

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
		ok       bool
	}{
		{"one", "options bonding max_bonds=0\n", map[string]string{"bonding": "max_bonds=0"}, true},
		{"comments and blanks", "# kiln\n\n  options  bonding   max_bonds=0  miimon=100\n", map[string]string{"bonding": "max_bonds=0 miimon=100"}, true},
		{"lines add up, dashes are underscores", "options bonding max_bonds=0\noptions bonding miimon=100\noptions crc32c-generic x=1\n", map[string]string{"bonding": "max_bonds=0 miimon=100", "crc32c_generic": "x=1"}, true},
		{"empty", "", map[string]string{}, true},
		{"no parameters", "options bonding\n", nil, false},
		{"not options", "alias bond0 bonding\n", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseOptions(strings.NewReader(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("ParseOptions() error = %v, want ok=%v", err, tc.ok)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("ParseOptions() (-want +got):\n%s", d)
			}
		})
	}
}

func TestFormatOptions(t *testing.T) {
	params := map[string]string{"bonding": "max_bonds=0", "8021q": " a=1  b=2 "}
	var b bytes.Buffer
	if err := FormatOptions(&b, params); err != nil {
		t.Fatal(err)
	}
	if want := "options 8021q a=1 b=2\noptions bonding max_bonds=0\n"; b.String() != want {
		t.Errorf("FormatOptions() = %q, want %q", b.String(), want)
	}
	back, err := ParseOptions(&b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"bonding": "max_bonds=0", "8021q": "a=1 b=2"}, back); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	for _, bad := range []map[string]string{{"bonding": " "}, {"a b": "x=1"}, {"": "x=1"}, {"#c": "x=1"}} {
		if err := FormatOptions(io.Discard, bad); err == nil {
			t.Errorf("FormatOptions(%q) accepted", bad)
		}
	}
}

// FuzzOptions: whatever FormatOptions writes, ParseOptions reads back.
func FuzzOptions(f *testing.F) {
	f.Add("bonding", "max_bonds=0")
	f.Add("8021q", "a=1 b=\"x\"")
	f.Fuzz(func(t *testing.T, name, params string) {
		var b bytes.Buffer
		if err := FormatOptions(&b, map[string]string{name: params}); err != nil {
			return
		}
		got, err := ParseOptions(&b)
		if err != nil {
			t.Fatalf("ParseOptions(%q) = %v", b.String(), err)
		}
		want := strings.Join(strings.Fields(params), " ")
		if got[strings.ReplaceAll(name, "-", "_")] != want {
			t.Fatalf("round trip of %q %q: %q", name, params, got)
		}
	})
}
