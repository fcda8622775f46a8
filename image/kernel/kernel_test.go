package kernel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
	"github.com/kilnlab/kiln/image/lock"
)

// pinnedKernel returns the cached kernel .deb of the embedded lock. It
// skips when the cache lacks it, unless KILN_NET_TESTS is set, in which
// case it fetches it from the pinned mirror.
func pinnedKernel(t *testing.T) string {
	t.Helper()
	f, err := lock.Default()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := cache.DefaultDir()
	if err != nil {
		t.Fatal(err)
	}
	c := &cache.Cache{Dir: dir}
	got, err := lock.Cached(c, f, "kernel-amd64")
	if errors.Is(err, cache.ErrNotCached) || errors.Is(err, cache.ErrHashMismatch) {
		if os.Getenv("KILN_NET_TESTS") == "" {
			t.Skipf("kernel .deb not in %s and KILN_NET_TESTS unset: %v", dir, err)
		}
		got, err = lock.Fetch(context.Background(), c, f, "kernel-amd64")
	}
	if err != nil {
		t.Fatal(err)
	}
	return got[0].Path
}

// TestPinnedKernel unpacks the real pinned kernel and checks what the
// initramfs build relies on: the image, one module tree, and a modules.dep
// (made by depmod, since the .deb has none) that knows the modules kiln
// loads to reach its root file system.
func TestPinnedKernel(t *testing.T) {
	hosttooltest.Need(t, "dpkg-deb", "depmod")
	deb := pinnedKernel(t)
	k, err := Extract(context.Background(), deb, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Version, "6.1.0-") || !strings.HasSuffix(k.Version, "-amd64") {
		t.Errorf("version %q", k.Version)
	}
	if st, err := os.Stat(k.Vmlinuz()); err != nil || st.Size() < 4<<20 {
		t.Fatalf("vmlinuz: %v %v", st, err)
	}
	dep, err := os.ReadFile(filepath.Join(k.ModulesDir(), "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range []string{"/ext4.ko:", "/squashfs.ko:", "/overlay.ko:", "/virtio_blk.ko:", "/e1000e.ko:"} {
		if !strings.Contains(string(dep), mod) {
			t.Errorf("modules.dep has no %s", strings.Trim(mod, "/:"))
		}
	}
}
