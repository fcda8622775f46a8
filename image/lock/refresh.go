package lock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/debian"
)

// Defaults for a new lock.
const (
	DefaultMirror = "http://deb.debian.org/debian"
	DefaultSuite  = "bookworm"
)

// DefaultComponents: main, plus non-free-firmware for raspi-firmware.
func DefaultComponents() []string { return []string{"main", "non-free-firmware"} }

// Options says where pins come from. Empty fields take the defaults above;
// Verifier defaults to gpgv with Keyring (the Debian archive keyring if
// empty). Cache holds the downloaded Packages indexes.
type Options struct {
	Mirror     string
	Suite      string
	Components []string
	Keyring    string
	Verifier   debian.Verifier
	Cache      *cache.Cache
	HTTP       *http.Client
	Log        *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Mirror == "" {
		o.Mirror = DefaultMirror
	}
	if o.Suite == "" {
		o.Suite = DefaultSuite
	}
	if len(o.Components) == 0 {
		o.Components = DefaultComponents()
	}
	if o.Verifier == nil {
		o.Verifier = debian.GPGV{Keyring: o.Keyring}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Lock resolves specs against the mirror's current signed index and
// returns a new lock. It needs the network.
func Lock(ctx context.Context, opts Options, specs []Spec) (*File, error) {
	opts = opts.withDefaults()
	if opts.Cache == nil {
		return nil, errors.New("lock: no cache for the Packages indexes")
	}
	client := &debian.Client{Mirror: opts.Mirror, Suite: opts.Suite, Components: opts.Components,
		Verifier: opts.Verifier, HTTP: opts.HTTP, Cache: opts.Cache, Log: opts.Log}
	rel, err := client.Release(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	f := &File{Format: Format, Mirror: opts.Mirror, Suite: opts.Suite, Components: opts.Components,
		Release: Release{Version: rel.Version, Date: rel.Date}, Sets: map[string]*Set{}}
	indexes := map[string]*debian.Index{}
	for _, s := range specs {
		ix, ok := indexes[s.Arch]
		if !ok {
			if ix, err = client.Index(ctx, rel, s.Arch); err != nil {
				return nil, fmt.Errorf("lock: %w", err)
			}
			indexes[s.Arch] = ix
			opts.Log.Info("index", "suite", opts.Suite, "arch", s.Arch, "packages", ix.Len())
		}
		pkgs, err := resolve(ix, s)
		if err != nil {
			return nil, fmt.Errorf("lock: set %s: %w", s.Name, err)
		}
		f.Sets[s.Name] = &Set{Spec: s, Packages: pins(pkgs)}
	}
	return f, nil
}

func pins(pkgs []debian.Package) []Pin {
	out := make([]Pin, len(pkgs))
	for i, p := range pkgs {
		out[i] = Pin{Package: p.Name, Version: p.Version, Arch: p.Architecture, Filename: p.Filename, Size: p.Size, SHA256: p.SHA256}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Package < out[j].Package })
	return out
}

// RefreshOptions is what `kiln lock` passes: where the lockfile is
// (DefaultPath if empty) and which sets to lock (those already in it, or
// in the embedded default, if Specs is nil).
type RefreshOptions struct {
	Options
	Path  string
	Specs []Spec
}

// Refresh re-pins a lockfile against the mirror and writes it. This is
// `kiln lock`.
func Refresh(ctx context.Context, opts RefreshOptions) error {
	if opts.Path == "" {
		opts.Path = DefaultPath
	}
	old, err := Read(opts.Path)
	if errors.Is(err, os.ErrNotExist) {
		old, err = Default()
	}
	if err != nil {
		return err
	}
	if opts.Specs == nil {
		opts.Specs = old.Specs()
	}
	if opts.Mirror == "" {
		opts.Mirror = old.Mirror
	}
	if opts.Suite == "" {
		opts.Suite = old.Suite
	}
	if len(opts.Components) == 0 {
		opts.Components = old.Components
	}
	f, err := Lock(ctx, opts.Options, opts.Specs)
	if err != nil {
		return err
	}
	// Re-pinning Debian leaves the upstream artifacts' pins as they were.
	f.Artifacts = old.Artifacts
	logChanges(opts.Options.withDefaults().Log, old, f)
	return f.Write(opts.Path)
}

// logChanges says per set how many pins changed, so a refresh is reviewable.
func logChanges(log *slog.Logger, old, f *File) {
	for _, spec := range f.Specs() {
		s := f.Sets[spec.Name]
		changed, added := 0, 0
		var bytes int64
		for _, p := range s.Packages {
			bytes += p.Size
			prev, ok := Pin{}, false
			if o, has := old.Sets[spec.Name]; has {
				prev, ok = o.Find(p.Package)
			}
			switch {
			case !ok:
				added++
			case prev != p:
				changed++
			}
		}
		log.Info("locked", "set", spec.Name, "packages", len(s.Packages), "bytes", bytes, "changed", changed, "added", added)
	}
}
