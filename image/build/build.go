// Package build makes everything `kiln build` writes: it runs the builders
// in order — pinned inputs, kernel and modules, installer initramfs, role
// images, per-machine ESP and state images — into a netboot bundle
// (image/bundle's format, ending with plan.json and manifest.json), then,
// when the lab has a Raspberry Pi gate, the gate's SD image carrying that
// bundle (image/gateimg), compressed, with a SHA256SUMS.
//
// The output directory holds:
//
//	bundle/          the netboot bundle (`kiln gate serve --bundle`)
//	<gate>.img       the gate's SD image, and <gate>.img.xz
//	SHA256SUMS       of the two images, for `sha256sum -c`
//	rpi-imager.json  Raspberry Pi Imager's repository file for the gate
//	                 image (`rpi-imager --repo out/rpi-imager.json`)
//	gate-secrets/    the gate's share of the lab's secrets (0700), as its
//	                 image carries them, for `kiln gate serve`
//	logs/            the long tools' logs (mmdebstrap, ...)
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
	// Out is the output directory (see the package comment).
	Out string
	// ProfileYAML is the profile's text, carried verbatim on the gate.
	ProfileYAML []byte
	// BuildTime stamps the gate image and is the gate clock's floor;
	// callers pass SOURCE_DATE_EPOCH when set, so that two builds of the
	// same inputs are byte-identical.
	BuildTime time.Time
	// SecretsDir is the lab's secrets directory; "" means
	// secrets.DefaultDir of the lab.
	SecretsDir string
	// Machines limits the per-machine images to these names; nil means
	// every netbooted machine of the plan.
	Machines []string
	// SourceDir is the kiln source tree (mkuimage and go build run there).
	SourceDir string
	// ImageBaseURL is where the gate's .img.xz will be published, for
	// Raspberry Pi Imager's repository file; "" means the file itself.
	ImageBaseURL string
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
	steps := b.steps()
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

type step struct {
	name string
	run  func(context.Context) error
}

func (b *builder) steps() []step {
	steps := []step{
		{"fetch pinned inputs", b.fetch},
		{"kernel and modules", b.kernel},
		{"boot loaders and iPXE", b.bootFiles},
		{"installer initramfs", b.initramfs},
		{"role images", b.roleImages},
		{"machine images", b.machineImages},
		{"machine secrets", b.machineSecrets},
		{"plan and manifest", b.finish},
	}
	if _, ok := b.gate(); ok {
		steps = append(steps,
			step{"gate kernel and firmware", b.gateBoot},
			step{"gate initramfs", b.gateInitramfs},
			step{"gate SD image", b.gateImage})
	}
	return steps
}

func (b *builder) progressf(format string, args ...any) {
	if b.Progress != nil {
		fmt.Fprintf(b.Progress, format, args...)
	}
}

// out returns the path of a bundle file, creating its directory.
func (b *builder) out(rel string) (string, error) {
	p := filepath.Join(b.bundleDir(), filepath.FromSlash(rel))
	return p, os.MkdirAll(filepath.Dir(p), 0o755)
}
