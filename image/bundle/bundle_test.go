package bundle_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/bundle"
)

func TestManifestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{bundle.GPTMBR: "mbr", bundle.ESP("ceph-1"): "", bundle.ManifestFile: "stale"}
	for p, c := range files {
		name := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := bundle.WriteManifest(dir); err != nil {
		t.Fatal(err)
	}
	m, err := bundle.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []bundle.File{
		{Path: "bios/gptmbr.bin", Size: 3, SHA256: "f5662649c772d7d7c017ebf21784239b8a28836551f1d507dbb9f015240290ed"},
		{Path: "machines/ceph-1/esp.img", Size: 0, SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	}
	if d := cmp.Diff(want, m.Files); d != "" {
		t.Errorf("manifest (-want +got):\n%s", d)
	}
	if got := m.ByPath()[bundle.GPTMBR].Size; got != 3 {
		t.Errorf("ByPath()[%s].Size = %d", bundle.GPTMBR, got)
	}
}
