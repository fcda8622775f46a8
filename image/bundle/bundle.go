// Package bundle owns the netboot bundle's format: the paths inside the
// directory `kiln build -o DIR` writes and the gate serves, and
// manifest.json, the list of every file with its size and sha256 that the
// gate and the installer trust. It is stdlib only so that the gate and the
// installer can share it without pulling in the builders (image/build).
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Paths inside a bundle (the contract between build, gate and installer).
const (
	PlanFile     = "plan.json"
	ManifestFile = "manifest.json"
	GPTMBR       = "bios/gptmbr.bin"
)

// Kernel and Initramfs are the installer's kernel and initramfs for arch
// (a Debian arch name, e.g. amd64): the files iPXE boots and every ESP
// carries.
func Kernel(arch string) string    { return arch + "/vmlinuz" }
func Initramfs(arch string) string { return arch + "/initramfs.cpio.gz" }

// TFTPFiles are the iPXE binaries served over TFTP, from Debian's ipxe.
var TFTPFiles = []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"}

// TFTP is the bundle path of one of TFTPFiles.
func TFTP(name string) string { return "tftp/" + name }

// Role is the bundle path of a role's squashfs image.
func Role(role string) string { return "roles/" + role + ".squashfs" }

// ESP and State are a machine's per-machine images.
func ESP(machine string) string   { return "machines/" + machine + "/esp.img" }
func State(machine string) string { return "machines/" + machine + "/state.img" }

// Manifest lists every file of a bundle.
type Manifest struct {
	Files []File `json:"files"`
}

// File is one bundle file.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ByPath indexes the manifest's files by their bundle path.
func (m *Manifest) ByPath() map[string]File {
	out := make(map[string]File, len(m.Files))
	for _, f := range m.Files {
		out[f.Path] = f
	}
	return out
}

// WriteManifest hashes every file under dir except the manifest itself and
// writes dir's manifest.json, files sorted by path.
func WriteManifest(dir string) error {
	var m Manifest
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == ManifestFile {
			return err
		}
		f, err := hashFile(path)
		if err != nil {
			return err
		}
		f.Path = filepath.ToSlash(rel)
		m.Files = append(m.Files, f)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ManifestFile), append(data, '\n'), 0o644)
}

// hashFile returns the size and sha256 of the file at path; the caller
// sets File.Path (its bundle path, which path is not).
func hashFile(path string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("hash %s: %w", path, err)
	}
	return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// ReadManifest reads a bundle's manifest.
func ReadManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("bundle manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("bundle manifest %s: %w", dir, err)
	}
	return &m, nil
}
