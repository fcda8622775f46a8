// Package diskstest builds fake sysfs trees with regular files as disks,
// for tests of disk selection and of the installer.
package diskstest

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kilnlab/kiln/installer/disks"
)

// Disk describes one disk of a fake tree.
type Disk struct {
	Name   string
	Size   uint64
	Attrs  map[string]string // path below /sys/block/<name> -> content
	Writes map[int64][]byte  // offset -> bytes already on the disk
}

// Serial is the Attrs of a virtio-blk disk with that serial.
func Serial(s string) map[string]string { return map[string]string{"serial": s} }

// New builds sys/block and dev under a temp dir; disks are sparse files.
func New(t testing.TB, ds ...Disk) disks.System {
	t.Helper()
	root := t.TempDir()
	s := disks.System{SysRoot: filepath.Join(root, "sys"), DevRoot: filepath.Join(root, "dev")}
	mkdir(t, filepath.Join(s.SysRoot, "block"))
	mkdir(t, s.DevRoot)
	for _, d := range ds {
		dir := filepath.Join(s.SysRoot, "block", d.Name)
		attrs := map[string]string{"size": strconv.FormatUint(d.Size/512, 10) + "\n"}
		for k, v := range d.Attrs {
			attrs[k] = v
		}
		for p, v := range attrs {
			mkdir(t, filepath.Dir(filepath.Join(dir, p)))
			if err := os.WriteFile(filepath.Join(dir, p), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		f, err := os.Create(filepath.Join(s.DevRoot, d.Name))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(int64(d.Size)); err != nil {
			t.Fatal(err)
		}
		for off, b := range d.Writes {
			if _, err := f.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func mkdir(t testing.TB, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}
