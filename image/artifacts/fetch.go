package artifacts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/lock"
)

// Fetch makes the files of one version of an artifact ("" is the lock's
// pin) for one arch present in the cache, verified and recorded for the
// lab, and returns their entries in role order. A file recorded and cached
// is used as it is, without the network; any other is fetched and must
// match the upstream's checksum list (signed, for HashiCorp), the lab's
// record and the lock's pin.
func (s *Store) Fetch(ctx context.Context, name, version, arch string) ([]Entry, error) {
	r, pin, err := s.release(name, version)
	if err != nil {
		return nil, err
	}
	rec, err := readRecord(s.LabDir)
	if err != nil {
		return nil, err
	}
	var sums map[string]string // fetched once, for the first file not cached
	out := make([]Entry, 0, len(r.roles()))
	for _, role := range r.roles() {
		if err := checkFile(r, pin, arch, role); err != nil {
			return nil, err
		}
		exp, err := s.expected(rec, pin, r, arch, role)
		if err != nil {
			return nil, err
		}
		if ok, err := s.isCached(exp); err != nil {
			return nil, err
		} else if ok {
			s.progressf("%s: cached, sha256 %s (%s)", what(r, arch, role), exp.sha, exp.entry.Origin)
			out = append(out, *exp.entry)
			continue
		}
		if sums == nil {
			if sums, err = s.checksums(ctx, r, arch); err != nil {
				return nil, err
			}
		}
		e, err := s.download(ctx, r, arch, role, sums, exp)
		if err != nil {
			return nil, err
		}
		if exp.entry == nil {
			rec.put(e)
			if err := rec.write(s.LabDir); err != nil {
				return nil, err
			}
		}
		out = append(out, e)
	}
	if version != "" && version != pin.Version {
		return out, s.markChosen(rec, out)
	}
	return out, nil
}

// markChosen records that the operator named these entries' version (a fetch
// with --version other than the pin): the lab uses it from now on, as
// after an import.
func (s *Store) markChosen(rec *record, entries []Entry) error {
	now := s.now()
	for i := range entries {
		entries[i].Chosen = now
		rec.put(entries[i])
	}
	return rec.write(s.LabDir)
}

// isCached reports whether the recorded file is in the cache and verifies.
func (s *Store) isCached(exp expected) (bool, error) {
	if exp.entry == nil {
		return false, nil
	}
	_, err := s.Cache.Cached(exp.entry.blob())
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, cache.ErrNotCached), errors.Is(err, cache.ErrHashMismatch):
		return false, nil // fetched again; a damaged copy is replaced
	}
	return false, err
}

// download fetches one file into the cache, checked against the
// checksum list's sha256 and what the record or the lock expects. An entry
// already recorded is returned as it was recorded.
func (s *Store) download(ctx context.Context, r release, arch, role string, sums map[string]string, exp expected) (Entry, error) {
	file, list := r.file(arch, role), r.sums(arch)
	sha, ok := sums[file]
	if !ok {
		return Entry{}, fmt.Errorf("%s: %s is not listed in %s", what(r, arch, role), file, r.url(list))
	}
	if exp.sha != "" && sha != exp.sha {
		remedy := "the upstream file is not the one the lock pins, and kiln will not use it"
		if exp.entry != nil {
			remedy = fmt.Sprintf("the upstream file is not the one the lab recorded, and kiln will not use it; if upstream confirms the change, remove that entry from %s and fetch again", recordPath(s.LabDir))
		}
		return Entry{}, mismatch(r, arch, role, "upstream "+list, sha, exp, remedy)
	}
	var size int64 // not known before the first download: the hash decides
	if exp.entry != nil {
		size = exp.entry.Size
	}
	path, err := s.Cache.Get(ctx, cache.Blob{Name: file, URL: r.url(file), Size: size, SHA256: sha})
	if err != nil {
		return Entry{}, fmt.Errorf("%s, checked against %s: %w", what(r, arch, role), list, err)
	}
	signed := "signed by HashiCorp"
	if r.sig(arch) == "" {
		signed = "unsigned: " + r.source + " publishes no signature"
	}
	s.progressf("%s: %s verified against %s (%s)", what(r, arch, role), file, list, signed)
	if exp.entry != nil {
		return *exp.entry, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return Entry{}, fmt.Errorf("artifacts: %w", err)
	}
	s.log().Debug("fetched", "artifact", r.name, "version", r.version, "arch", arch, "file", file, "sha256", sha)
	return Entry{Name: r.name, Version: r.version, Arch: arch, Role: role, File: file, SHA256: sha, Size: fi.Size(),
		URL: r.url(file), Origin: OriginVerified, At: s.now()}, nil
}

// expected is what a file must be, when anything says so yet: the lab's
// record, or else a sha256 the lock pins for that version.
type expected struct {
	sha   string
	from  string // for messages: where sha comes from
	entry *Entry // the record's, nil if none
	// zip: sha is known to be a HashiCorp release zip's, which a bare
	// binary can never match.
	zip bool
}

func (s *Store) expected(rec *record, pin *lock.Artifact, r release, arch, role string) (expected, error) {
	pinned := ""
	if r.version == pin.Version {
		pinned, _ = pin.Known(arch, role)
	}
	hashicorp := r.source == SourceHashiCorp
	e := rec.find(r.name, r.version, arch, role)
	if e == nil {
		return expected{sha: pinned, from: "the lock's pin", zip: hashicorp}, nil
	}
	exp := expected{sha: e.SHA256, entry: e, zip: hashicorp && e.Origin == OriginVerified,
		from: fmt.Sprintf("the lab's record %s (%s %s)", recordPath(s.LabDir), e.Origin, e.At.Format(time.DateOnly))}
	if pinned != "" && pinned != e.SHA256 {
		return exp, fmt.Errorf("%s: %w: %s holds %s, the lock pins %s: one of them is wrong; find out which before changing either",
			what(r, arch, role), ErrHashMismatch, exp.from, e.SHA256, pinned)
	}
	return exp, nil
}

// mismatch refuses bytes (got, from gotFrom) that differ from what exp
// expects, showing both hashes and what to do.
func mismatch(r release, arch, role, gotFrom, got string, exp expected, remedy string) error {
	return fmt.Errorf("%s: %w: %s has %s, %s holds %s: %s",
		what(r, arch, role), ErrHashMismatch, gotFrom, got, exp.from, exp.sha, remedy)
}
