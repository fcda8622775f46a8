package gateimg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
	"github.com/kilnlab/kiln/image/lock"
)

// TestPinnedFirmware builds an image with the pinned raspi-firmware's
// start4.elf and fixup4.dat when the .deb is already in the cache (it
// never downloads), checks the boot partition, and logs size and time.
func TestPinnedFirmware(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	hosttooltest.Need(t, append(Tools(), "mksquashfs", "dpkg-deb", "fsck.vfat", "mdir", "mtype")...)
	dir, err := cache.DefaultDir()
	if err != nil {
		t.Skip(err)
	}
	f, err := lock.Default()
	if err != nil {
		t.Fatal(err)
	}
	debs, err := lock.Cached(&cache.Cache{Dir: dir}, f, "firmware-arm64")
	if err != nil {
		t.Skipf("raspi-firmware not cached: %v", err)
	}
	fw := t.TempDir()
	for _, d := range debs {
		if out, err := exec.Command("dpkg-deb", "-x", d.Path, fw).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb: %v\n%s", err, out)
		}
	}
	boot := standIns(t)
	for i, f := range boot {
		if f.Dest == "/start4.elf" || f.Dest == "/fixup4.dat" {
			boot[i].Src = filepath.Join(fw, "usr/lib/raspi-firmware", f.Dest)
		}
	}
	ctx := context.Background()
	out := t.TempDir()
	payload := filepath.Join(out, "payload.squashfs")
	if err := Payload(ctx, payloadTree(t), payload, testEpoch); err != nil {
		t.Fatal(err)
	}
	o := Options{Out: filepath.Join(out, "gate-1.img"), Signature: Signature("homelab", "gate-1"), Boot: boot,
		Payload: payload, Epoch: testEpoch}
	start := time.Now()
	if err := Build(ctx, o); err != nil {
		t.Fatal(err)
	}
	built := time.Since(start)
	fi, _ := os.Stat(payload)
	l, _ := NewLayout(fi.Size())
	checkBoot(t, o, l)
	t.Logf("build %v; %s", built.Round(time.Millisecond), sizes(o.Out))
}

// sizes says the apparent and allocated size of each file, in MiB.
func sizes(paths ...string) string {
	var s string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return err.Error()
		}
		used := fi.Sys().(*syscall.Stat_t).Blocks * 512
		s += fmt.Sprintf("%s: %.1f MiB (%.1f MiB allocated) ", filepath.Base(p), float64(fi.Size())/mib, float64(used)/mib)
	}
	return s
}
