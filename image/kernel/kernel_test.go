package kernel

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/cache"
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

func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing under CI: %v", n, err)
			}
			t.Skipf("%s not installed: %v", n, err)
		}
	}
}

// TestPinnedKernel unpacks the real pinned kernel, cuts out the default
// modules and checks the subset with depmod itself: depmod run on the
// subset tree must produce the same modules.dep.
func TestPinnedKernel(t *testing.T) {
	needTools(t, "dpkg-deb", "depmod")
	deb := pinnedKernel(t)
	ctx := context.Background()
	k, err := Extract(ctx, deb, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Version, "6.1.0-") || !strings.HasSuffix(k.Version, "-amd64") {
		t.Errorf("version %q", k.Version)
	}
	if st, err := os.Stat(k.Vmlinuz()); err != nil || st.Size() < 4<<20 {
		t.Fatalf("vmlinuz: %v %v", st, err)
	}
	dst := t.TempDir()
	c, err := k.Modules(dst, DefaultModules())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range c.Load {
		names = append(names, m.Name)
	}
	t.Logf("load %d modules: %v; builtin: %v", len(c.Load), names, c.Builtin)
	for _, want := range []string{"virtio_pci", "virtio_blk", "ext4", "vfat", "squashfs", "overlay", "nvme", "e1000e"} {
		if !slices.Contains(names, want) {
			t.Errorf("load list lacks %s", want)
		}
	}
	if !slices.Contains(c.Builtin, "af_packet") {
		t.Errorf("af_packet should be builtin in Debian 6.1: %v", c.Builtin)
	}
	before := func(a, b string) {
		if slices.Index(names, a) > slices.Index(names, b) {
			t.Errorf("%s loads after %s", a, b)
		}
	}
	before("virtio_ring", "virtio_pci")
	before("virtio", "virtio_blk")
	before("jbd2", "ext4")
	before("fat", "vfat")
	before("crc32c_generic", "ext4")

	mods := filepath.Join(dst, "lib", "modules", k.Version)
	ours, err := os.ReadFile(filepath.Join(mods, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"modules.builtin", "modules.order"} {
		if _, err := os.Stat(filepath.Join(mods, f)); err != nil {
			t.Error(err)
		}
	}
	// depmod rewrites modules.dep: check it in a copy.
	check := t.TempDir()
	if out, err := exec.Command("cp", "-a", filepath.Join(dst, "lib"), check).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if out, err := exec.Command("depmod", "-b", check, k.Version).CombinedOutput(); err != nil {
		t.Fatalf("depmod on the subset: %v %s", err, out)
	}
	theirs, err := os.ReadFile(filepath.Join(check, "lib", "modules", k.Version, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	// depmod breaks ties in dependency order differently on a smaller
	// tree: compare each module's dependency set.
	if d := cmp.Diff(depSets(theirs), depSets(ours)); d != "" {
		t.Errorf("our modules.dep differs from depmod's on the subset (-depmod +ours):\n%s", d)
	}
	var size int64
	filepath.Walk(mods, func(_ string, fi os.FileInfo, _ error) error {
		if fi != nil && !fi.IsDir() {
			size += fi.Size()
		}
		return nil
	})
	t.Logf("subset tree: %d bytes", size)
}

func depSets(b []byte) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		mod, deps, _ := strings.Cut(line, ":")
		out[mod] = strings.Fields(deps)
		sort.Strings(out[mod])
	}
	return out
}
