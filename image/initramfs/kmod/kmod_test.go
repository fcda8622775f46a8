package kmod

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/initramfs/moddep"
)

func TestLoadAll(t *testing.T) {
	dir := t.TempDir()
	dep := "kernel/virtio_blk.ko: kernel/virtio.ko kernel/virtio_ring.ko\nkernel/virtio.ko: kernel/virtio_ring.ko\nkernel/virtio_ring.ko:\nkernel/e1000e.ko:\nkernel/bonding.ko:\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, moddep.OptionsFile), []byte("options bonding max_bonds=0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var loaded []string
	l := Loader{Dir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Load: func(p, params string) error {
		rel, _ := filepath.Rel(dir, p)
		if rel == "kernel/e1000e.ko" {
			return errors.New("no such device")
		}
		loaded = append(loaded, strings.TrimSpace(rel+" "+params))
		return nil
	}}
	n, err := l.LoadAll()
	if err == nil || n != 4 {
		t.Errorf("LoadAll() = %d, %v; want 4 and the e1000e error", n, err)
	}
	want := []string{"kernel/virtio_ring.ko", "kernel/virtio.ko", "kernel/virtio_blk.ko", "kernel/bonding.ko max_bonds=0"}
	if d := cmp.Diff(want, loaded); d != "" {
		t.Errorf("load order (-want +got):\n%s", d)
	}
}

func TestLoadAllNoDep(t *testing.T) {
	l := Loader{Dir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if _, err := l.LoadAll(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadAll() = %v, want ErrNotExist", err)
	}
}

// TestLoadAllBadOptions: an options file that cannot be read is reported,
// and every module still loads (without parameters).
func TestLoadAllBadOptions(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"modules.dep": "kernel/virtio_ring.ko:\n", moddep.OptionsFile: "alias x y\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l := Loader{Dir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Load: func(string, string) error { return nil }}
	if n, err := l.LoadAll(); n != 1 || err == nil {
		t.Errorf("LoadAll() = %d, %v; want 1 and the options error", n, err)
	}
}
