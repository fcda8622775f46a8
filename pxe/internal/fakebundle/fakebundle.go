// Package fakebundle writes tiny netboot bundles for the pxe tests: the
// bundle's layout and manifest.json (both image/bundle's), dummy bytes for
// contents.
package fakebundle

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnlab/kiln/image/bundle"
)

// Machine and Role are the one machine of the fake bundle and its role.
const (
	Machine = "ceph-1"
	Role    = "storage"
)

// Paths lists the files of a bundle for Machine, of role Role.
func Paths() []string {
	var out []string
	for _, f := range bundle.TFTPFiles {
		out = append(out, bundle.TFTP(f))
	}
	return append(out,
		bundle.Kernel("amd64"), bundle.Initramfs("amd64"), bundle.GPTMBR,
		bundle.Role(Role), bundle.ESP(Machine), bundle.State(Machine))
}

// Content is the dummy content of path.
func Content(path string) []byte {
	return bytes.Repeat([]byte("fake "+path+"\n"), 300)
}

// Write writes Paths under dir, with manifest.json.
func Write(t testing.TB, dir string) {
	t.Helper()
	for _, p := range Paths() {
		name := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, Content(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := bundle.WriteManifest(dir); err != nil {
		t.Fatal(err)
	}
}
