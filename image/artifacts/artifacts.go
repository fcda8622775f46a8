// Package artifacts owns kiln's managed upstream artifacts: the Consul,
// Vault and k3s release files the lock pins by version and source
// (lock.Artifact). It knows each source's file names, fetches a release's
// files once into the download cache, verifies them against the upstream's
// own checksum list (and, for HashiCorp, the list's signature by
// HashiCorp's release key, embedded here), imports files obtained some
// other way, and records what a lab has in the lab's artifacts.lock.json:
// per name, version, arch and file, the sha256, size, origin and when.
//
// The record decides from then on: bytes that differ from it, or from a
// sha256 the lock pins, are refused, whether fetched, imported or used;
// a recorded and cached file needs no network.
//
// Which version a lab uses (Resolve): the version asked for (the
// profile's), when one is; else the one the operator last named for the
// name (an import, or a fetch with --version: a version the lock does not
// pin comes in only when named, and naming it is the operator choosing it
// for this lab); else the lock's pin.
package artifacts

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/lock"
)

// Sources: how an artifact's file names, checksum list and signature
// derive from its name, version and base URL.
const (
	SourceHashiCorp = "hashicorp"
	SourceK3s       = "k3s"
)

// File roles within an artifact.
const (
	// RoleBinary is the program: HashiCorp's release zip (holding the
	// program named like the artifact), or k3s's bare binary.
	RoleBinary = "binary"
	// RoleImages is k3s's airgap images tarball, part of the k3s artifact.
	RoleImages = "images"
)

// Origins of a recorded file.
const (
	// OriginVerified: fetched, and matched the upstream's checksum list
	// (signed, for HashiCorp).
	OriginVerified = "verified"
	// OriginImported: copied from a local file the operator obtained.
	OriginImported = "imported"
)

// Errors the caller decides on.
var (
	// ErrHashMismatch: bytes differ from the lab's record, the lock's pin
	// or the upstream's checksum list. It is cache.ErrHashMismatch, so a
	// refusal of either package matches it.
	ErrHashMismatch = cache.ErrHashMismatch
	// ErrBadSignature: a checksum list's signature does not verify with
	// the release key.
	ErrBadSignature = errors.New("checksum list signature does not verify")
	// ErrUnknown: the lock pins no artifact of that name (or no such file
	// or arch of it).
	ErrUnknown = errors.New("not an artifact the lock pins")
	// ErrUnpinned: an import of a version the lock does not pin, without
	// the caller naming that version.
	ErrUnpinned = errors.New("version not pinned by the lock")
	// ErrUnverified: an import of the pinned version when neither the
	// lock nor the lab's record holds its sha256, without the caller
	// naming that version: nothing could check the file.
	ErrUnverified = errors.New("nothing to check it against")
	// ErrMissing: Resolve found a file neither recorded for the lab nor in
	// the cache.
	ErrMissing = errors.New("not fetched or imported for this lab")
)

// Store is one lab's view of the managed artifacts: the lock's pins, the
// shared download cache, and the lab's record in LabDir. Keyring nil is
// HashiCorp's release key embedded in kiln; tests inject their own. Bases
// maps an artifact name or a source to a base URL used in place of the
// pin's (a mirror); an artifact's own entry wins. A nil Progress discards
// progress, a nil Log discards logs, a nil Now is time.Now.
type Store struct {
	Pins     map[string]*lock.Artifact
	Cache    *cache.Cache
	LabDir   string
	Keyring  openpgp.EntityList
	Bases    map[string]string
	Progress io.Writer
	Log      *slog.Logger
	Now      func() time.Time
}

// Names lists the artifacts the lock pins, sorted.
func (s *Store) Names() []string {
	return slices.Sorted(maps.Keys(s.Pins))
}

// ImportName is how an import names a file of an artifact: the artifact's
// name for its binary, name-role for another file (k3s-images).
func ImportName(name, role string) string {
	if role == RoleBinary {
		return name
	}
	return name + "-" + role
}

// SplitImportName undoes ImportName: "k3s-images" is k3s's images,
// anything else the named artifact's binary.
func SplitImportName(s string) (name, role string) {
	if n, ok := strings.CutSuffix(s, "-"+RoleImages); ok {
		return n, RoleImages
	}
	return s, RoleBinary
}

// release returns the release of a pinned artifact at version ("" is the
// pin's), with the base URL a mirror may override.
func (s *Store) release(name, version string) (release, *lock.Artifact, error) {
	pin, ok := s.Pins[name]
	if !ok {
		pinned := strings.Join(s.Names(), ", ")
		if pinned == "" {
			pinned = "none"
		}
		return release{}, nil, fmt.Errorf("%w: %q (the lock pins %s)", ErrUnknown, name, pinned)
	}
	if version == "" {
		version = pin.Version
	}
	base := s.Bases[name]
	if base == "" {
		base = s.Bases[pin.Source]
	}
	if base == "" {
		base = pin.Base
	}
	r := release{name: name, version: version, source: pin.Source, base: strings.TrimRight(base, "/")}
	if pin.Source != SourceHashiCorp && pin.Source != SourceK3s {
		return release{}, nil, fmt.Errorf("artifact %s: source %q is neither %s nor %s", name, pin.Source, SourceHashiCorp, SourceK3s)
	}
	return r, pin, nil
}

// checkFile refuses an arch the pin does not list, or a role the source
// has no file for.
func checkFile(r release, pin *lock.Artifact, arch, role string) error {
	if !slices.Contains(pin.Arches, arch) {
		return fmt.Errorf("%w: %s for arch %q (pinned for %s)", ErrUnknown, r.name, arch, strings.Join(pin.Arches, ", "))
	}
	if !slices.Contains(r.roles(), role) {
		return fmt.Errorf("%w: %s has no %s file", ErrUnknown, r.name, role)
	}
	return nil
}

// now is full precision: the most recent import wins, and two imports
// in one second are common in scripts.
func (s *Store) now() time.Time {
	if s.Now == nil {
		return time.Now().UTC()
	}
	return s.Now().UTC()
}

func (s *Store) progressf(format string, args ...any) {
	if s.Progress != nil {
		fmt.Fprintf(s.Progress, format+"\n", args...)
	}
}

func (s *Store) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// what names one file of a release for messages: "consul 1.22.6 amd64 binary".
func what(r release, arch, role string) string {
	return fmt.Sprintf("%s %s %s %s", r.name, r.version, arch, role)
}
