package kmod

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadAll(t *testing.T) {
	dir := t.TempDir()
	dep := "kernel/virtio_blk.ko: kernel/virtio.ko kernel/virtio_ring.ko\nkernel/virtio.ko: kernel/virtio_ring.ko\nkernel/virtio_ring.ko:\nkernel/e1000e.ko:\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	var loaded []string
	l := Loader{Dir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Load: func(p string) error {
		rel, _ := filepath.Rel(dir, p)
		if rel == "kernel/e1000e.ko" {
			return errors.New("no such device")
		}
		loaded = append(loaded, rel)
		return nil
	}}
	n, err := l.LoadAll()
	if err == nil || n != 3 {
		t.Errorf("LoadAll() = %d, %v; want 3 and the e1000e error", n, err)
	}
	want := []string{"kernel/virtio_ring.ko", "kernel/virtio.ko", "kernel/virtio_blk.ko"}
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
