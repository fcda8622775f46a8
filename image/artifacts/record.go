package artifacts

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/kilnlab/kiln/image/cache"
)

// RecordFile is the lab's record, in the lab's state directory.
const RecordFile = "artifacts.lock.json"

// recordFormat is the record's format version this package reads and
// writes.
const recordFormat = 1

// record is the lab's artifacts.lock.json: what the lab has of each
// artifact, one entry per name, version, arch and file role.
type record struct {
	Format  int     `json:"format"`
	Entries []Entry `json:"entries"`
}

// Entry is one file as the lab recorded it. The sha256 is taken when the
// file is first fetched or imported and never changes; nothing here is
// secret.
type Entry struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	Role    string `json:"role"`
	// File is the upstream file name, or the imported file's base name.
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	URL    string `json:"url,omitempty"`  // fetched from
	Path   string `json:"path,omitempty"` // imported from
	Origin string `json:"origin"`
	// At is when the file was recorded: first fetched or imported.
	At time.Time `json:"at"`
	// Chosen is when the operator last named this version: an import, or
	// a fetch with --version other than the lock's pin. The most recent
	// choice of a name is the version the lab uses.
	Chosen time.Time `json:"chosen,omitzero"`
}

func (e Entry) blob() cache.Blob {
	return cache.Blob{Name: e.File, URL: e.URL, Size: e.Size, SHA256: e.SHA256}
}

func (e Entry) same(name, version, arch, role string) bool {
	return e.key() == fileKey{name, version, arch, role}
}

// fileKey names one file of the record: an entry per key.
type fileKey struct{ name, version, arch, role string }

func (e Entry) key() fileKey { return fileKey{e.Name, e.Version, e.Arch, e.Role} }

func recordPath(labDir string) string { return filepath.Join(labDir, RecordFile) }

// readRecord reads the lab's record; none yet is an empty one.
func readRecord(labDir string) (*record, error) {
	path := recordPath(labDir)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &record{Format: recordFormat}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("artifacts: %w", err)
	}
	r, err := parseRecord(data)
	if err != nil {
		return nil, fmt.Errorf("artifacts: %s: %w (kiln never rewrites a record it cannot read: fix or remove it)", path, err)
	}
	return r, nil
}

// parseRecord decodes strictly: unknown fields, trailing data, a bad
// entry or two entries for one file are refused.
func parseRecord(data []byte) (*record, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r record
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return nil, errors.New("data after the record")
	}
	if r.Format != recordFormat {
		return nil, fmt.Errorf("format %d, this kiln reads %d", r.Format, recordFormat)
	}
	seen := map[fileKey]bool{}
	for i, e := range r.Entries {
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if seen[e.key()] {
			return nil, fmt.Errorf("entry %d: %s recorded twice", i, e.what())
		}
		seen[e.key()] = true
	}
	return &r, nil
}

func (e Entry) check() error {
	switch {
	case e.Name == "" || e.Version == "" || e.Arch == "" || e.Role == "" || e.File == "":
		return errors.New("name, version, arch, role and file are required")
	case !isSHA256(e.SHA256):
		return fmt.Errorf("%s: bad sha256 %q", e.what(), e.SHA256)
	case e.Size < 0:
		return fmt.Errorf("%s: negative size", e.what())
	case e.Origin != OriginVerified && e.Origin != OriginImported:
		return fmt.Errorf("%s: origin %q is neither %s nor %s", e.what(), e.Origin, OriginVerified, OriginImported)
	}
	return nil
}

func (e Entry) what() string {
	return fmt.Sprintf("%s %s %s %s", e.Name, e.Version, e.Arch, e.Role)
}

// find returns the entry of one file, nil if none.
func (r *record) find(name, version, arch, role string) *Entry {
	for i := range r.Entries {
		if r.Entries[i].same(name, version, arch, role) {
			return &r.Entries[i]
		}
	}
	return nil
}

// put adds e, or replaces the entry of the same file.
func (r *record) put(e Entry) {
	if old := r.find(e.Name, e.Version, e.Arch, e.Role); old != nil {
		*old = e
		return
	}
	r.Entries = append(r.Entries, e)
}

// lastChosen is the version of name the operator named last, "" if
// none.
func (r *record) lastChosen(name string) string {
	var last Entry
	for _, e := range r.Entries {
		if e.Name == name && e.Chosen.After(last.Chosen) {
			last = e
		}
	}
	return last.Version
}

// write replaces the lab's record atomically: a temp file, synced, renamed
// over it, and the directory synced, so a crash leaves the old record or
// the new one. The lab's directory is created 0700 if absent: it is also
// the lab's secrets directory.
func (r *record) write(labDir string) error {
	slices.SortFunc(r.Entries, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version),
			cmp.Compare(a.Arch, b.Arch), cmp.Compare(a.Role, b.Role))
	})
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(labDir, 0o700); err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	if err := writeSynced(recordPath(labDir), append(data, '\n')); err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	return nil
}

func writeSynced(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op once renamed
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
