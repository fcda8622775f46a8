// Package lock owns kiln's lockfile: every Debian input pinned by name,
// version, architecture, pool filename, size and sha256, grouped in named
// sets (kernel-amd64, boot-amd64, rootfs-<role>-amd64, ...), and the
// upstream release artifacts (Consul, Vault, k3s) pinned by version and
// source. The lock in the repo is embedded as the default. Lock refreshes
// pins from the signed archive index (network); Fetch brings a set's files
// into the cache and verifies them, and needs no network when the cache is
// warm.
package lock

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
)

// Format is the lockfile format version this package reads and writes.
const Format = 1

// DefaultPath is the lockfile's place in the repo, relative to its root.
const DefaultPath = "image/lock/kiln.lock.json"

//go:embed kiln.lock.json
var embedded []byte

// ErrNoSet: the lock has no set of that name.
var ErrNoSet = errors.New("no such set in the lock")

// File is the whole lockfile.
type File struct {
	Format     int      `json:"format"`
	Mirror     string   `json:"mirror"` // e.g. http://deb.debian.org/debian
	Suite      string   `json:"suite"`  // e.g. bookworm
	Components []string `json:"components"`
	// Release records which signed InRelease the pins came from.
	Release Release `json:"release"`
	// Sets by name; encoding/json writes map keys sorted, so the file
	// diffs cleanly.
	Sets map[string]*Set `json:"sets"`
	// Artifacts by name: upstream releases image/artifacts fetches.
	Artifacts map[string]*Artifact `json:"artifacts,omitempty"`
}

// Release identifies the archive state a lock was taken from.
type Release struct {
	Version string `json:"version"` // e.g. 12.15
	Date    string `json:"date"`    // the InRelease Date field
}

// Set is one named group of pins and the request that produced them, so
// that `kiln lock` can refresh it without being told again.
type Set struct {
	Spec
	Packages []Pin `json:"packages"`
}

// Pin is one .deb, exactly.
type Pin struct {
	Package  string `json:"package"`
	Version  string `json:"version"`
	Arch     string `json:"arch"`     // the package's Architecture (amd64, arm64 or all)
	Filename string `json:"filename"` // pool path relative to the mirror
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
}

// Default is the lock embedded in the binary.
func Default() (*File, error) {
	return Parse(embedded)
}

// Read reads a lockfile from disk.
func Read(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse decodes and checks a lockfile.
func Parse(data []byte) (*File, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if f.Format != Format {
		return nil, fmt.Errorf("lock: format %d, this kiln reads %d", f.Format, Format)
	}
	if f.Mirror == "" || f.Suite == "" {
		return nil, fmt.Errorf("lock: mirror and suite are required")
	}
	if err := f.checkArtifacts(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Marshal is the lockfile's canonical text: indented JSON, sets by name,
// packages by name, artifacts by name, their arches sorted.
func (f *File) Marshal() ([]byte, error) {
	for _, s := range f.Sets {
		sort.Slice(s.Packages, func(i, j int) bool { return s.Packages[i].Package < s.Packages[j].Package })
	}
	for _, a := range f.Artifacts {
		sort.Strings(a.Arches)
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Write writes f to path atomically (temp file + rename).
func (f *File) Write(path string) error {
	data, err := f.Marshal()
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("lock: %w", err)
	}
	return nil
}

// Set returns the named set.
func (f *File) Set(name string) (*Set, error) {
	s, ok := f.Sets[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q (run `kiln lock` to add it)", ErrNoSet, name)
	}
	return s, nil
}

// Find returns the pin of a package in a set.
func (s *Set) Find(pkg string) (Pin, bool) {
	for _, p := range s.Packages {
		if p.Package == pkg {
			return p, true
		}
	}
	return Pin{}, false
}

// Specs lists the requests behind f's sets, sorted by name.
func (f *File) Specs() []Spec {
	specs := make([]Spec, 0, len(f.Sets))
	for _, s := range f.Sets {
		specs = append(specs, s.Spec)
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	return specs
}

// DebName is the conventional file name of the pinned .deb,
// name_version_arch.deb with the epoch's ':' as dpkg writes it, "%3a".
func (p Pin) DebName() string {
	return p.Package + "_" + escapeEpoch(p.Version) + "_" + p.Arch + ".deb"
}

func escapeEpoch(v string) string {
	return string(bytes.ReplaceAll([]byte(v), []byte(":"), []byte("%3a")))
}
