// Package bundle owns the netboot bundle: the directory `kiln build -o DIR`
// writes and the gate serves. It runs the builders in order — pinned inputs,
// kernel and modules, installer initramfs, role images, per-machine ESP and
// state images — and ends with plan.json and manifest.json, the list of
// every file with its size and sha256 that the gate and the installer trust.
package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/lock"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
)

// Paths inside a bundle (the contract between build, gate and installer).
const (
	PlanFile     = "plan.json"
	ManifestFile = "manifest.json"
	Kernel       = "amd64/vmlinuz"
	Initramfs    = "amd64/initramfs.cpio.gz"
	GPTMBR       = "bios/gptmbr.bin"
)

// TFTPFiles are the iPXE binaries served over TFTP, from Debian's ipxe.
var TFTPFiles = []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"}

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

// Options say what to build and where.
type Options struct {
	Profile *profiles.Profile
	Plan    *plan.Plan
	Lock    *lock.File
	Cache   *cache.Cache
	Out     string
	// Machines limits the per-machine images to these names; nil means
	// every netbooted machine of the plan.
	Machines []string
	// SourceDir is the kiln source tree (mkuimage and go build run there).
	SourceDir string
	// Progress receives human progress lines; Log the structured log.
	Progress io.Writer
	Log      *slog.Logger
}

// Build writes the bundle into o.Out. Work files live in a temporary
// directory next to it, removed at the end.
func Build(ctx context.Context, o Options) error {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(filepath.Clean(o.Out)), ".kiln-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &builder{Options: o, work: work}
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"fetch pinned inputs", b.fetch},
		{"kernel and modules", b.kernel},
		{"boot loaders and iPXE", b.bootFiles},
		{"installer initramfs", b.initramfs},
		{"role images", b.roleImages},
		{"machine images", b.machineImages},
		{"plan and manifest", b.finish},
	}
	for i, s := range steps {
		start := time.Now()
		b.progressf("[%d/%d] %s\n", i+1, len(steps), s.name)
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		b.progressf("      done in %s\n", time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}

func (b *builder) progressf(format string, args ...any) {
	if b.Progress != nil {
		fmt.Fprintf(b.Progress, format, args...)
	}
}

// out returns the path of a bundle file, creating its directory.
func (b *builder) out(rel string) (string, error) {
	p := filepath.Join(b.Out, filepath.FromSlash(rel))
	return p, os.MkdirAll(filepath.Dir(p), 0o755)
}

// writeManifest hashes every file under dir except the manifest itself.
func writeManifest(dir string) error {
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
