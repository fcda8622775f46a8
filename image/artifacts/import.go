package artifacts

import (
	"fmt"
	"path/filepath"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/lock"
)

// Import puts a file of an artifact obtained some other way (path) into
// the cache and records it for the lab as imported; role is RoleBinary or
// RoleImages. version "" means the lock's pin; a version the lock does not
// pin is taken only when named here, which is the operator choosing it for
// this lab. arch "" is read from the file (an ELF header, or an upstream
// file name); a given arch must agree with it.
//
// Where the lab's record or the lock holds a sha256 for that version and
// file, the file must match it, else it is refused with both hashes. For
// HashiCorp the file is the release zip, whose sha256 the upstream's list
// gives, or the bare program, which can never match a zip's sha256.
func (s *Store) Import(name, path, version, arch, role string) (Entry, error) {
	r, pin, err := s.release(name, version)
	if err != nil {
		return Entry{}, err
	}
	f, arch, err := examine(r, pin, path, version, arch, role)
	if err != nil {
		return Entry{}, err
	}
	rec, err := readRecord(s.LabDir)
	if err != nil {
		return Entry{}, err
	}
	exp, err := s.expected(rec, pin, r, arch, role)
	if err != nil {
		return Entry{}, err
	}
	if exp.sha != "" && f.sha != exp.sha {
		return Entry{}, s.importMismatch(r, arch, role, path, f, exp)
	}
	if exp.sha == "" && version == "" {
		// Taken silently, any program would be recorded as the pin.
		return Entry{}, fmt.Errorf("import %s as %s: %w: neither the lock's pin nor %s holds its sha256; "+
			"run `kiln artifacts fetch %s` once where the release is reachable (it verifies the upstream's checksum list and records the sha256), "+
			"or pass --version %s to take this file unverified, recorded as imported",
			path, what(r, arch, role), ErrUnverified, recordPath(s.LabDir), r.name, r.version)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Entry{}, fmt.Errorf("artifacts: %w", err)
	}
	if _, err := s.Cache.Put(abs, cache.Blob{Name: filepath.Base(path), Size: f.size, SHA256: f.sha}); err != nil {
		return Entry{}, fmt.Errorf("%s: %w", what(r, arch, role), err)
	}
	now := s.now()
	e := Entry{Name: r.name, Version: r.version, Arch: arch, Role: role, File: filepath.Base(path), SHA256: f.sha,
		Size: f.size, Path: abs, Origin: OriginImported, At: now}
	if exp.entry != nil {
		// The very bytes the lab recorded: that record stands, and this
		// import chooses its version again.
		e = *exp.entry
	}
	e.Chosen = now
	rec.put(e)
	if err := rec.write(s.LabDir); err != nil {
		return Entry{}, err
	}
	s.progressf("%s: %s %s, sha256 %s", what(r, arch, role), path, e.Origin, e.SHA256)
	return e, nil
}

// examine reads a file to import and refuses one that is not the file of
// r asked for: of another kind, version or arch. It returns what it
// learnt and the arch.
func examine(r release, pin *lock.Artifact, path, version, arch, role string) (fileInfo, string, error) {
	f, err := inspect(path, r.name)
	if err != nil {
		return fileInfo{}, "", err
	}
	if err := fits(r, role, path, f); err != nil {
		return fileInfo{}, "", err
	}
	if f.form == formZip {
		if f.elfArch, err = zipArch(path, r.name); err != nil {
			return fileInfo{}, "", err
		}
	}
	if err := checkVersion(r, version, pin.Version, path, f); err != nil {
		return fileInfo{}, "", err
	}
	if arch, err = importArch(r, pin.Arches, role, arch, path, f); err != nil {
		return fileInfo{}, "", err
	}
	return f, arch, checkFile(r, pin, arch, role)
}

func (s *Store) importMismatch(r release, arch, role, path string, f fileInfo, exp expected) error {
	remedy := "import the file the lock pins (checked against the lock's sha256 where the lock pins that version)"
	if exp.entry != nil {
		remedy = fmt.Sprintf("import the file recorded, or remove that entry from %s to record another", recordPath(s.LabDir))
	}
	if f.form == formELF && exp.zip {
		remedy = fmt.Sprintf("%s is a bare binary, whose sha256 can never match that of the release zip: import %s instead",
			path, r.file(arch, role))
	}
	return mismatch(r, arch, role, path, f.sha, exp, remedy)
}

// fits refuses a file of the wrong kind for the role.
func fits(r release, role, path string, f fileInfo) error {
	want := []string{formELF}
	switch {
	case role == RoleImages:
		want = []string{formZstd}
	case r.source == SourceHashiCorp:
		want = []string{formZip, formELF}
	}
	for _, w := range want {
		if f.form == w {
			return nil
		}
	}
	return fmt.Errorf("import %s as %s %s: it is %s, want %s", path, r.name, role, describe(f.form), describeAll(want))
}

// checkVersion refuses a release zip whose upstream name says another
// version than the one asked for, or, with none asked for, than the pin.
func checkVersion(r release, asked, pinned, path string, f fileInfo) error {
	if f.nameVersion == "" || f.nameVersion == r.version {
		return nil
	}
	if asked == "" {
		return fmt.Errorf("import %s: %w: it is %s %s by its name, the lock pins %s; pass --version %s to use it for this lab",
			path, ErrUnpinned, r.name, f.nameVersion, pinned, f.nameVersion)
	}
	return fmt.Errorf("import %s: it is %s %s by its name, not the %s asked for", path, r.name, f.nameVersion, asked)
}

// importArch is the arch asked for, or the file's: an ELF header's, else
// an upstream file name's. They must agree.
func importArch(r release, arches []string, role, asked, path string, f fileInfo) (string, error) {
	found, how := f.elfArch, "its ELF header"
	if found == "" {
		found, how = archByName(r, arches, role, filepath.Base(path)), "its name"
	}
	switch {
	case asked == "" && found == "":
		return "", fmt.Errorf("import %s: cannot tell its architecture: pass --arch", path)
	case asked == "":
		return found, nil
	case found != "" && found != asked:
		return "", fmt.Errorf("import %s as %s: it is %s by %s", path, asked, found, how)
	}
	return asked, nil
}

// archByName is the arch of an upstream file name of r's role, "" if the
// name is none of them.
func archByName(r release, arches []string, role, base string) string {
	for _, arch := range arches {
		if r.file(arch, role) == base {
			return arch
		}
	}
	return ""
}
