// Package build makes the netboot bundle: it runs the builders in order —
// pinned inputs, kernel and modules, installer initramfs, role images,
// per-machine ESP and state images — and writes a bundle (image/bundle's
// format), ending with plan.json and manifest.json.
package build

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/lock"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
)

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
	// Tools run in other directories (mmdebstrap's copy:// repository,
	// go build in the source tree): every path handed down is absolute.
	out, err := filepath.Abs(o.Out)
	if err != nil {
		return err
	}
	o.Out = out
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
