package esp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnlab/kiln/image/fatimg"
	"github.com/kilnlab/kiln/image/hosttool"
	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
)

const hostSystemdBoot = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

const cmdline = "rdinit=/bbin/kiln-init kiln.mode=boot kiln.root=PARTUUID=0b16bb49-b663-5469-b1ae-a78aa7ab020c " +
	"kiln.state=PARTUUID=334e246f-8f0b-5af4-9746-b4af94980a23 console=tty0 console=ttyS0,115200"

func needFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// inputs writes a stand-in kernel and initramfs (fixed pseudo-random
// bytes: the ESP does not look inside them).
func inputs(t *testing.T) Options {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	write := func(name string, n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return Options{
		Kernel:         write("vmlinuz", 8<<20+17),
		Initramfs:      write("initramfs.cpio.gz", 20<<20+3),
		Cmdline:        cmdline,
		SystemdBootEFI: hostSystemdBoot,
	}
}

func TestBuild(t *testing.T) {
	hosttooltest.Need(t, append(Tools(), "fsck.vfat", "mdir", "mtype", "mcopy")...)
	needFile(t, hostSystemdBoot)
	ctx := context.Background()
	o := inputs(t)
	o.Out = filepath.Join(t.TempDir(), "esp.img")
	if err := Build(ctx, o); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(o.Out); err != nil || fi.Size() != DefaultSize {
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
	for _, want := range []string{"KILN-ESP", "ldlinux  sys", "ldlinux  c32", "vmlinuz", "initrd", "syslinux cfg",
		"BOOTX64  EFI", " loader.conf", " kiln.conf", "Serial Number is " + fatimg.VolumeIDString(derivedID(o))} {
		if !strings.Contains(string(out), want) {
			t.Errorf("mdir -/ lacks %q:\n%s", want, out)
		}
	}

	for path, want := range map[string]string{
		SyslinuxCfg: "SERIAL 0 115200\nDEFAULT kiln\nPROMPT 0\nTIMEOUT 0\n\nLABEL kiln\n  LINUX /vmlinuz\n  INITRD /initrd\n  APPEND " + cmdline + "\n",
		LoaderConf:  "timeout 0\ndefault kiln.conf\n",
		EntryConf:   "title kiln\nlinux /vmlinuz\ninitrd /initrd\noptions " + cmdline + "\n",
	} {
		got, err := exec.Command("mtype", "-i", o.Out, "::"+path).Output()
		if err != nil || string(got) != want {
			t.Errorf("%s: %v\n%q\nwant\n%q", path, err, got, want)
		}
	}
	for path, src := range map[string]string{KernelPath: o.Kernel, InitrdPath: o.Initramfs, BootloaderEFI: o.SystemdBootEFI} {
		got, err := exec.Command("mcopy", "-i", o.Out, "::"+path, "-").Output()
		want, _ := os.ReadFile(src)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s (%v)", path, src, err)
		}
	}

	// The boot sector and its backup agree, and carry syslinux's code.
	img, err := os.ReadFile(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img[:512], img[6*512:7*512]) || string(img[3:11]) != "SYSLINUX" {
		t.Errorf("boot sector: OEM %q, backup equal: %v", img[3:11], bytes.Equal(img[:512], img[6*512:7*512]))
	}
}

func derivedID(o Options) uint32 {
	d, _ := o.withDefaults()
	return d.VolumeID
}

// TestReproducible builds twice from the same inputs at different wall
// clock times (the pause crosses FAT's 2 s timestamp resolution) and
// expects the same bytes; a different command line changes them.
func TestReproducible(t *testing.T) {
	hosttooltest.Need(t, Tools()...)
	needFile(t, hostSystemdBoot)
	ctx := context.Background()
	o := inputs(t)
	var sums [3][32]byte
	for i := range sums {
		if i == 1 {
			time.Sleep(2100 * time.Millisecond)
		}
		if i == 2 {
			o.Cmdline += " quiet"
		}
		o.Out = filepath.Join(t.TempDir(), "esp.img")
		if err := Build(ctx, o); err != nil {
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
		t.Error("a different command line gave the same image")
	}
}

func TestOptionsRejected(t *testing.T) {
	base := Options{Out: "x", Kernel: "k", Initramfs: "i", SystemdBootEFI: "e"}
	for name, mod := range map[string]func(*Options){
		"no kernel":     func(o *Options) { o.Kernel = "" },
		"tiny":          func(o *Options) { o.Size = 16 << 20 },
		"unaligned":     func(o *Options) { o.Size = DefaultSize + 512 },
		"long label":    func(o *Options) { o.Label = "KILN-ESP-TOO-LONG" },
		"newline":       func(o *Options) { o.Cmdline = "a\nDEFAULT evil" },
		"label colon":   func(o *Options) { o.Label = "A:B" },
		"no bootloader": func(o *Options) { o.SystemdBootEFI = "" },
	} {
		o := base
		mod(&o)
		if err := Build(context.Background(), o); err == nil || errors.Is(err, hosttool.ErrMissing) {
			t.Errorf("%s: Build = %v, want an options error", name, err)
		}
	}
}
