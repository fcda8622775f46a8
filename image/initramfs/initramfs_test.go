package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/kilnlab/kiln/image/initramfs/moddep"
)

// fakeModules makes a lib/modules tree with a modules.dep like Debian's.
func fakeModules(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lib", "modules")
	rel := filepath.Join(dir, "6.1.0-99-amd64")
	dep := "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n" +
		"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n" +
		"kernel/drivers/virtio/virtio_ring.ko:\n" +
		"kernel/fs/squashfs/squashfs.ko:\n" +
		"kernel/sound/snd.ko:\n" +
		"kernel/drivers/net/bonding/bonding.ko: kernel/net/tls/tls.ko\n" +
		"kernel/net/tls/tls.ko:\n"
	for _, p := range []string{"kernel/drivers/block/virtio_blk.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko", "kernel/fs/squashfs/squashfs.ko", "kernel/sound/snd.ko", "kernel/drivers/net/bonding/bonding.ko", "kernel/net/tls/tls.ko"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(rel, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rel, p), []byte("ELF "+p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rel, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	builtin := "kernel/net/packet/af_packet.ko\nkernel/drivers/mmc/core/mmc_block.ko\n"
	if err := os.WriteFile(filepath.Join(rel, "modules.builtin"), []byte(builtin), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A module the kernel has built in is said at debug level only (nothing
// is wrong); one in neither list at info, naming it; a want list of
// built-in modules only stages none (not every module).
func TestStageModulesBuiltin(t *testing.T) {
	for _, tc := range []struct {
		want []string
		logs string // the log's lines, level and message, at debug level
		dep  string
	}{
		{[]string{"af_packet", "squashfs"},
			"level=DEBUG msg=\"module built into the kernel: nothing to stage\" module=af_packet\n",
			"kernel/fs/squashfs/squashfs.ko:\n"},
		{[]string{"mmc-block", "af_packet"},
			"level=DEBUG msg=\"module built into the kernel: nothing to stage\" module=mmc-block\n" +
				"level=DEBUG msg=\"module built into the kernel: nothing to stage\" module=af_packet\n", ""},
		{[]string{"no_such"},
			"level=INFO msg=\"modules not in this kernel (neither loadable nor built in), skipped\" err=\"no_such: module not in modules.dep\"\n", ""},
	} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug,
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}}))
		dst := t.TempDir()
		if err := StageModules(fakeModules(t), dst, tc.want, log); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tc.logs, logs.String()); d != "" {
			t.Errorf("%q: logs (-want +got):\n%s", tc.want, d)
		}
		got, err := os.ReadFile(filepath.Join(dst, "6.1.0-99-amd64", "modules.dep"))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tc.dep, string(got)); d != "" {
			t.Errorf("%q: modules.dep (-want +got):\n%s", tc.want, d)
		}
	}
}

func TestStageModules(t *testing.T) {
	src := fakeModules(t)
	dst := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := StageModules(src, dst, []string{"virtio_blk", "squashfs", "built_in_one"}, log); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dst, "6.1.0-99-amd64", "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	want := "kernel/drivers/virtio/virtio_ring.ko:\n" +
		"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n" +
		"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n" +
		"kernel/fs/squashfs/squashfs.ko:\n"
	if d := cmp.Diff(want, string(got)); d != "" {
		t.Errorf("modules.dep (-want +got):\n%s", d)
	}
	if _, err := os.Stat(filepath.Join(dst, "6.1.0-99-amd64", "kernel/sound/snd.ko")); err == nil {
		t.Error("an unwanted module was staged")
	}
	if _, err := os.Stat(filepath.Join(dst, "6.1.0-99-amd64", moddep.OptionsFile)); err == nil {
		t.Error("an options file was staged for modules that take no parameters")
	}
	if err := StageModules(t.TempDir(), dst, nil, log); err == nil {
		t.Error("StageModules() accepted a tree without modules.dep")
	}
}

// TestStageModulesOptions: a staged module with ModuleParams gets them in
// the options file kiln-init's loader reads.
func TestStageModulesOptions(t *testing.T) {
	dst := t.TempDir()
	if err := StageModules(fakeModules(t), dst, []string{"bonding"}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join(dst, "6.1.0-99-amd64")
	dep, _ := os.ReadFile(filepath.Join(rel, "modules.dep"))
	if want := "kernel/net/tls/tls.ko:\nkernel/drivers/net/bonding/bonding.ko: kernel/net/tls/tls.ko\n"; string(dep) != want {
		t.Errorf("modules.dep = %q, want %q", dep, want)
	}
	opts, err := os.ReadFile(filepath.Join(rel, moddep.OptionsFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := "options bonding max_bonds=0\n"; string(opts) != want {
		t.Errorf("%s = %q, want %q", moddep.OptionsFile, opts, want)
	}
}

// TestDefaultModules: the servers (amd64) load bonding and 8021q for the
// links of a profile's interfaces; the gate (arm64, one NIC) does not; and
// every module with parameters is one some initramfs loads.
func TestDefaultModules(t *testing.T) {
	amd64, arm64 := DefaultModules("amd64"), DefaultModules("arm64")
	for _, m := range []string{"bonding", "8021q", "dm_mod", "virtio_net"} {
		if !slices.Contains(amd64, m) {
			t.Errorf("DefaultModules(amd64) lacks %s: %q", m, amd64)
		}
	}
	for _, m := range []string{"bonding", "8021q"} {
		if slices.Contains(arm64, m) || slices.Contains(GateModules(), m) {
			t.Errorf("an arm64 initramfs loads %s", m)
		}
	}
	for name, params := range ModuleParams() {
		if !slices.Contains(amd64, name) && !slices.Contains(arm64, name) {
			t.Errorf("ModuleParams has %s (%s), which no initramfs loads", name, params)
		}
		if err := moddep.FormatOptions(io.Discard, map[string]string{name: params}); err != nil {
			t.Errorf("ModuleParams: %v", err)
		}
	}
	if ModuleParams()["bonding"] != "max_bonds=0" {
		t.Errorf("bonding is loaded with %q: it would make a bond0 of its own", ModuleParams()["bonding"])
	}
}

// readCPIO returns the archive's records by name.
func readCPIO(t *testing.T, path string) map[string]cpio.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]cpio.Record{}
	for _, r := range recs {
		out[r.Name] = r
	}
	return out
}

// TestBuild builds the real initramfs twice with the Go toolchain (about a
// minute each on two cores), checks its contents with u-root's cpio reader
// and that the two builds are byte-identical. -short skips it.
func TestBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds with the Go toolchain; skipped by -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("go toolchain missing under CI")
		}
		t.Skip("go toolchain missing")
	}
	mods := fakeModules(t)
	extra := filepath.Join(t.TempDir(), "hello")
	if err := os.WriteFile(extra, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var outs []string
	for i := range 2 {
		out := filepath.Join(dir, "initramfs"+string(rune('a'+i))+".cpio.gz")
		start := time.Now()
		err := Build(context.Background(), Options{Arch: "amd64", Out: out, ModulesDir: mods, Modules: []string{"virtio_blk"}, ExtraFiles: []string{extra + ":etc/kiln/hello"}})
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(out)
		t.Logf("build %d: %v, %d bytes", i+1, time.Since(start).Round(time.Second), st.Size())
		outs = append(outs, out)
	}
	a, _ := os.ReadFile(outs[0])
	b, _ := os.ReadFile(outs[1])
	if !bytes.Equal(a, b) {
		t.Error("two builds differ")
	}

	recs := readCPIO(t, outs[0])
	for _, name := range []string{
		"init", "bin/uinit", "bin/sh", "bbin/bb", "bbin/kiln-init", "bbin/init", "bbin/gosh", "bbin/ls", "bbin/ip", "bbin/mount", "bbin/dmesg", "bbin/cat",
		"dev/console", "etc/kiln/hello",
		"lib/modules/6.1.0-99-amd64/modules.dep",
		"lib/modules/6.1.0-99-amd64/kernel/drivers/block/virtio_blk.ko",
		"lib/modules/6.1.0-99-amd64/kernel/drivers/virtio/virtio_ring.ko",
	} {
		if _, ok := recs[name]; !ok {
			names := make([]string, 0, len(recs))
			for n := range recs {
				names = append(names, n)
			}
			sort.Strings(names)
			t.Errorf("%s missing from the initramfs; it has %v", name, names)
		}
	}
	if _, ok := recs["lib/modules/6.1.0-99-amd64/kernel/sound/snd.ko"]; ok {
		t.Error("unwanted module in the initramfs")
	}
	for link, want := range map[string]string{"init": "bbin/init", "bin/uinit": "../bbin/kiln-init", "bbin/kiln-init": "bb"} {
		r := recs[link]
		if r.Mode&cpio.S_IFMT != cpio.S_IFLNK {
			t.Errorf("%s is not a symlink", link)
			continue
		}
		got, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if string(got) != want {
			t.Errorf("%s -> %q, want %q", link, got, want)
		}
	}
}
