package fatimg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
)

// files is a small tree: a host file at the root, generated files in
// nested directories, an empty file.
func files(t *testing.T) []File {
	src := filepath.Join(t.TempDir(), "kernel")
	b := bytes.Repeat([]byte("kiln fat image\n"), 300_000) // ~4.5 MB
	if err := os.WriteFile(src, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return []File{
		{Dest: "/vmlinuz", Src: src},
		{Dest: "/config.txt", Data: []byte("arm_64bit=1\n")},
		{Dest: "/overlays/sub/deep.dtbo", Data: []byte("overlay")},
		{Dest: "/overlays/README", Data: nil},
	}
}

func TestBuild(t *testing.T) {
	hosttooltest.Need(t, append(Tools(), "fsck.vfat", "mdir", "mtype")...)
	o := Options{Out: filepath.Join(t.TempDir(), "boot.img"), Size: 40 << 20, Label: "KILN-BOOT", VolumeID: 0x1234abcd, Files: files(t)}
	if err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(o.Out); err != nil || fi.Size() != o.Size {
		t.Fatalf("image: %v, %v", fi, err)
	}
	out, err := exec.Command("fsck.vfat", "-n", o.Out).CombinedOutput()
	if err != nil || strings.Contains(string(out), "differences") || strings.Contains(string(out), "Dirty") {
		t.Errorf("fsck.vfat -n: %v\n%s", err, out)
	}
	out, err = exec.Command("mdir", "-a", "-i", o.Out, "-/", "::/").CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v\n%s", err, out)
	}
	for _, want := range []string{"Volume in drive : is KILN-BOOT", "Serial Number is 1234-ABCD",
		"vmlinuz        4500000", "config   txt        12", "Directory for ::/overlays/sub", " deep.dtbo", "README               0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("mdir -/ lacks %q:\n%s", want, out)
		}
	}
	for _, f := range o.Files {
		got, err := exec.Command("mtype", "-i", o.Out, "::"+f.Dest).Output()
		want := f.Data
		if f.Src != "" {
			want, _ = os.ReadFile(f.Src)
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v, %d bytes, want %d", f.Dest, err, len(got), len(want))
		}
	}
}

// TestReproducible builds twice across FAT's 2 s time resolution and
// expects the same bytes; another volume ID changes them.
func TestReproducible(t *testing.T) {
	hosttooltest.Need(t, Tools()...)
	o := Options{Size: MinSize, Label: "KILN-BOOT", Files: files(t)}
	var sums [3][32]byte
	for i := range sums {
		if i == 1 {
			time.Sleep(2100 * time.Millisecond)
		}
		if i == 2 {
			o.VolumeID = 7
		}
		o.Out = filepath.Join(t.TempDir(), "fat.img")
		if err := Build(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(o.Out)
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = sha256.Sum256(b)
	}
	if sums[0] != sums[1] {
		t.Error("two builds of the same inputs differ")
	}
	if sums[0] == sums[2] {
		t.Error("another volume ID gave the same image")
	}
}

func TestOptionsRejected(t *testing.T) {
	base := Options{Out: "x", Size: MinSize, Label: "L", Files: []File{{Dest: "/a"}}}
	for name, mod := range map[string]func(*Options){
		"no out":        func(o *Options) { o.Out = "" },
		"tiny":          func(o *Options) { o.Size = 16 << 20 },
		"unaligned":     func(o *Options) { o.Size = MinSize + 512 },
		"no label":      func(o *Options) { o.Label = "" },
		"long label":    func(o *Options) { o.Label = "KILN-BOOT-TOO-LONG" },
		"label colon":   func(o *Options) { o.Label = "A:B" },
		"relative dest": func(o *Options) { o.Files = []File{{Dest: "a"}} },
		"unclean dest":  func(o *Options) { o.Files = []File{{Dest: "/a/../b"}} },
		"root dest":     func(o *Options) { o.Files = []File{{Dest: "/"}} },
		"twice":         func(o *Options) { o.Files = []File{{Dest: "/a"}, {Dest: "/A"}} },
	} {
		o := base
		mod(&o)
		if err := Build(context.Background(), o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Build = %v, want ErrInvalid", name, err)
		}
	}
}

func TestDirs(t *testing.T) {
	got := Dirs([]File{{Dest: "/vmlinuz"}, {Dest: "/EFI/BOOT/BOOTX64.EFI"}, {Dest: "/loader/entries/k.conf"},
		{Dest: "/loader/loader.conf"}, {Dest: "/EFI/x"}})
	want := []string{"/EFI", "/EFI/BOOT", "/loader", "/loader/entries"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Dirs (-want +got):\n%s", diff)
	}
}

func TestVolumeIDString(t *testing.T) {
	for id, want := range map[uint32]string{0x12345678: "1234-5678", 0xabc: "0000-0ABC"} {
		if got := VolumeIDString(id); got != want {
			t.Errorf("VolumeIDString(%#x) = %q, want %q", id, got, want)
		}
	}
}
