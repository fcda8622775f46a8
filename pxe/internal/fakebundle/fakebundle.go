// Package fakebundle writes tiny netboot bundles for the pxe tests: the
// bundle's layout and manifest.json, dummy bytes for contents.
package fakebundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// Paths is a bundle for one machine, ceph-1, of role storage.
var Paths = []string{
	"tftp/undionly.kpxe", "tftp/ipxe.efi", "tftp/snponly.efi",
	"amd64/vmlinuz", "amd64/initramfs.cpio.gz", "bios/gptmbr.bin",
	"roles/storage.squashfs", "machines/ceph-1/esp.img", "machines/ceph-1/state.img",
}

// Content is the dummy content of path.
func Content(path string) []byte {
	return bytes.Repeat([]byte("fake "+path+"\n"), 300)
}

// Write writes Paths under dir, with manifest.json.
func Write(t testing.TB, dir string) {
	t.Helper()
	type entry struct {
		Path   string `json:"path"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	}
	var man struct {
		Files []entry `json:"files"`
	}
	for _, p := range Paths {
		data := Content(p)
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		man.Files = append(man.Files, entry{p, int64(len(data)), hex.EncodeToString(sum[:])})
	}
	b, err := json.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
