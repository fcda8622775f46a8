package artifacts

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/lock"
)

// Resolved is what a lab uses of one artifact for one arch.
type Resolved struct {
	Name, Version, Arch string
	// Pinned: Version is the one the lock pins, not one asked for or
	// imported.
	Pinned bool
	Files  []Local // in role order: the binary, then k3s's images
}

// Local is one recorded file of a resolved artifact, verified in the
// cache at Path.
type Local struct {
	Entry
	Path string
}

// File returns the resolved file of a role.
func (r Resolved) File(role string) (Local, bool) {
	for _, l := range r.Files {
		if l.Role == role {
			return l, true
		}
	}
	return Local{}, false
}

// Resolve returns what the lab uses of an artifact for arch, and never
// touches the network. The version is want when not "" (the profile's),
// else the one last named by an import or fetch for the name, else the
// lock's pin. Every file must be recorded for the lab and verify in the
// cache: a missing one is ErrMissing, saying which command fetches or
// imports it.
func (s *Store) Resolve(name, arch, want string) (Resolved, error) {
	rec, err := readRecord(s.LabDir)
	if err != nil {
		return Resolved{}, err
	}
	version, _, err := s.choose(rec, name, want)
	if err != nil {
		return Resolved{}, err
	}
	r, pin, err := s.release(name, version)
	if err != nil {
		return Resolved{}, err
	}
	out := Resolved{Name: name, Version: version, Arch: arch, Pinned: version == pin.Version}
	for _, role := range r.roles() {
		l, err := s.local(rec, pin, r, arch, role)
		if err != nil {
			return Resolved{}, err
		}
		out.Files = append(out.Files, l)
	}
	return out, nil
}

// local is one recorded file, verified in the cache.
func (s *Store) local(rec *record, pin *lock.Artifact, r release, arch, role string) (Local, error) {
	if err := checkFile(r, pin, arch, role); err != nil {
		return Local{}, err
	}
	exp, err := s.expected(rec, pin, r, arch, role)
	if err != nil {
		return Local{}, err
	}
	if exp.entry == nil {
		return Local{}, fmt.Errorf("%s: %w (%s): %s", what(r, arch, role), ErrMissing, recordPath(s.LabDir), s.howToGet(r, pin, arch, role))
	}
	// By hash alone, so that a refusal shows both hashes.
	b := exp.entry.blob()
	b.Size = 0
	p, err := s.Cache.Cached(b)
	switch {
	case errors.Is(err, cache.ErrNotCached):
		return Local{}, fmt.Errorf("%s: recorded, but %w (%s): %s", what(r, arch, role), err, s.Cache.Dir, s.howToGet(r, pin, arch, role))
	case err != nil:
		return Local{}, fmt.Errorf("%s: the cached copy is not what the lab recorded: %w; to replace it, %s", what(r, arch, role), err, s.howToGet(r, pin, arch, role))
	}
	return Local{Entry: *exp.entry, Path: p}, nil
}

// howToGet says which commands bring a file into the lab.
func (s *Store) howToGet(r release, pin *lock.Artifact, arch, role string) string {
	version := ""
	if r.version != pin.Version {
		version = " --version " + r.version
	}
	return fmt.Sprintf("run `kiln artifacts fetch --lab-dir %s%s --arch %s %s` (needs the network), or `kiln artifacts import --lab-dir %s%s --arch %s %s=FILE` with %s obtained some other way",
		s.LabDir, version, arch, r.name, s.LabDir, version, arch, ImportName(r.name, role), r.file(arch, role))
}

// Version is the version of name the lab uses (as Resolve chooses it,
// want being the profile's) and why, for people.
func (s *Store) Version(name, want string) (version, why string, err error) {
	rec, err := readRecord(s.LabDir)
	if err != nil {
		return "", "", err
	}
	return s.choose(rec, name, want)
}

func (s *Store) choose(rec *record, name, want string) (version, why string, err error) {
	pin, ok := s.Pins[name]
	if !ok {
		_, _, err := s.release(name, "")
		return "", "", err
	}
	switch last := rec.lastChosen(name); {
	case want != "":
		return want, "asked for", nil
	case last != "" && last != pin.Version:
		return last, "the version last named by an import or fetch, in place of the lock's " + pin.Version, nil
	}
	return pin.Version, "the lock's pin", nil
}

// Row is one line of List: one file of an artifact version for one arch.
type Row struct {
	Name, Version, Arch string
	File                string
	Origin              string // verified, imported, or NotFetched for a pin
	SHA256              string // "" while not known
	Cached              bool   // present at the recorded size
}

// NotFetched is the origin of a pinned file the lab has not recorded.
const NotFetched = "not fetched"

// List returns a row per file of every pin and per file the lab recorded
// of other versions, by name, version, arch and role. It never touches
// the network, nor hashes the cache (every use verifies).
func (s *Store) List() ([]Row, error) {
	rec, err := readRecord(s.LabDir)
	if err != nil {
		return nil, err
	}
	var rows []Row
	listed := map[fileKey]bool{}
	for _, name := range s.Names() {
		r, pin, err := s.release(name, "")
		if err != nil {
			return nil, err
		}
		for _, arch := range pin.Arches {
			for _, role := range r.roles() {
				listed[fileKey{name, r.version, arch, role}] = true
				if e := rec.find(name, r.version, arch, role); e != nil {
					rows = append(rows, s.row(*e))
					continue
				}
				sha, _ := pin.Known(arch, role)
				rows = append(rows, Row{Name: name, Version: r.version, Arch: arch, File: r.file(arch, role),
					Origin: NotFetched, SHA256: sha, Cached: sha != "" && s.present(sha, 0)})
			}
		}
	}
	for _, e := range rec.Entries {
		if !listed[e.key()] {
			rows = append(rows, s.row(e))
		}
	}
	slices.SortStableFunc(rows, func(a, b Row) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version), cmp.Compare(a.Arch, b.Arch))
	})
	return rows, nil
}

func (s *Store) row(e Entry) Row {
	return Row{Name: e.Name, Version: e.Version, Arch: e.Arch, File: e.File, Origin: e.Origin, SHA256: e.SHA256,
		Cached: s.present(e.SHA256, e.Size)}
}

// present reports whether the cache holds a file of that sha256 (and
// size, if known), without hashing it.
func (s *Store) present(sha string, size int64) bool {
	fi, err := os.Stat(s.Cache.Path(sha))
	return err == nil && fi.Mode().IsRegular() && (size == 0 || fi.Size() == size)
}

// WriteList writes List as a table, then which version of each artifact
// the lab uses (with no version asked for) and why.
func (s *Store) WriteList(w io.Writer) error {
	rows, err := s.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tARCH\tFILE\tORIGIN\tSHA256\tCACHED")
	for _, r := range rows {
		sha, cached := "-", "no"
		if r.SHA256 != "" {
			sha = r.SHA256[:12]
		}
		if r.Cached {
			cached = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Version, r.Arch, r.File, r.Origin, sha, cached)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nrecord: %s\n", recordPath(s.LabDir))
	for _, name := range s.Names() {
		version, why, err := s.Version(name, "")
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s: the lab uses %s (%s)\n", name, version, why)
	}
	return nil
}

// Recorded returns the lab's record of one file of an artifact, if any
// (offline; the cache is not looked at).
func (s *Store) Recorded(name, version, arch, role string) (Entry, bool, error) {
	rec, err := readRecord(s.LabDir)
	if err != nil {
		return Entry{}, false, err
	}
	e := rec.find(name, version, arch, role)
	if e == nil {
		return Entry{}, false, nil
	}
	return *e, true, nil
}
