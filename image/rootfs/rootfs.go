// Package rootfs builds a role's root file system image: a Debian system
// installed by mmdebstrap from a given, already verified closure of .deb
// files — served to apt as a local flat repository, so the build needs no
// network — customised for kiln's boot mode (mount point /kiln/state,
// systemd-networkd and the role's units enabled, an empty machine-id so
// systemd initialises it at first boot), then packed with mksquashfs
// (zstd). The squashfs is mounted read-only with /etc and /var overlaid
// from the state partition.
//
// Reproducibility: mmdebstrap honours SOURCE_DATE_EPOCH and removes its
// own unreproducible files; the host's /etc/hostname and /etc/resolv.conf,
// which it copies in, are removed (the machine's state provides them);
// mksquashfs stamps every file and the superblock with SOURCE_DATE_EPOCH.
//
// mmdebstrap runs in root mode: its unshare mode would leave a directory
// owned by sub-UIDs, which squashfs-tools 4.5 (no -tar input) cannot pack
// with the right owners. Build therefore needs root.
package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kilnlab/kiln/image/hosttool"
)

// DefaultEpoch (2024-01-01 UTC) stamps the image when Options.Epoch is 0.
const DefaultEpoch = 1704067200

// StateMount is the empty directory the state file system is mounted on.
const StateMount = "/kiln/state"

// Tools lists the host tools Build runs.
func Tools() []string { return []string{"apt-ftparchive", "mmdebstrap", "mksquashfs"} }

// ErrNeedRoot is returned when Build does not run as root.
var ErrNeedRoot = errors.New("rootfs: building a root file system needs root (mmdebstrap --mode=root)")

// Options describe one role image.
type Options struct {
	// Debs are paths of verified .deb files: the complete closure of
	// Packages plus the Essential set and apt.
	Debs []string
	// Packages are installed on top of the Essential set.
	Packages []string
	Arch     string // Debian architecture, e.g. amd64
	Suite    string // e.g. bookworm
	// ExtraFiles maps an absolute path in the image to a host file copied
	// there with its mode, e.g. /usr/lib/kiln/kiln-firstboot.
	ExtraFiles map[string]string
	// Units are enabled with systemctl, after systemd-networkd.service.
	Units []string
	// Sources is written to /etc/apt/sources.list; "" leaves a comment
	// (the build's local repository must not stay there).
	Sources string
	Out     string // squashfs file to write (replaced atomically)
	// Progress receives mmdebstrap's and mksquashfs's output; nil discards it.
	Progress io.Writer
	// Epoch (seconds since 1970) is SOURCE_DATE_EPOCH; 0 means DefaultEpoch.
	Epoch int64
}

// Build writes the squashfs described by o.
func Build(ctx context.Context, o Options) error {
	if err := o.check(); err != nil {
		return err
	}
	if o.Epoch == 0 {
		o.Epoch = DefaultEpoch
	}
	if os.Geteuid() != 0 {
		return ErrNeedRoot
	}
	if err := hosttool.Check(Tools()...); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(filepath.Dir(o.Out), ".rootfs-")
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	defer os.RemoveAll(stage)
	if err := build(ctx, o, stage); err != nil {
		return fmt.Errorf("rootfs %s: %w", o.Out, err)
	}
	return os.Rename(filepath.Join(stage, "root.squashfs"), o.Out)
}

func (o Options) check() error {
	switch {
	case o.Out == "" || o.Arch == "" || o.Suite == "":
		return errors.New("rootfs: Out, Arch and Suite are required")
	case len(o.Debs) == 0:
		return errors.New("rootfs: no .deb files given")
	}
	for _, p := range o.Packages {
		if p == "" || strings.ContainsAny(p, ", \t\n") {
			return fmt.Errorf("rootfs: bad package name %q", p)
		}
	}
	for dest := range o.ExtraFiles {
		if !path.IsAbs(dest) || path.Clean(dest) != dest || dest == "/" {
			return fmt.Errorf("rootfs: extra file destination %q is not a clean absolute path", dest)
		}
	}
	return nil
}

func build(ctx context.Context, o Options, stage string) error {
	// apt resolves copy:// URLs from its own working directory.
	stage, err := filepath.Abs(stage)
	if err != nil {
		return err
	}
	repo := filepath.Join(stage, "repo")
	if err := makeRepo(ctx, repo, o.Debs, o.Epoch); err != nil {
		return err
	}
	root := filepath.Join(stage, "root")
	err = hosttool.Run(ctx, hosttool.Cmd{Name: "mmdebstrap", Epoch: o.Epoch, Output: o.Progress,
		Args: mmdebstrapArgs(o, repo, root)})
	if err != nil {
		return err
	}
	// SOURCE_DATE_EPOCH (from hosttool) sets the superblock time and every
	// file's time; mksquashfs refuses -mkfs-time/-all-time alongside it.
	args := []string{root, filepath.Join(stage, "root.squashfs"), "-comp", "zstd", "-noappend"}
	if o.Progress == nil {
		args = append(args, "-no-progress", "-quiet")
	}
	return hosttool.Run(ctx, hosttool.Cmd{Name: "mksquashfs", Epoch: o.Epoch, Output: o.Progress, Args: args})
}

// makeRepo links (or copies) the .debs into dir and indexes them as a flat
// repository (Packages + Release) with apt-ftparchive.
func makeRepo(ctx context.Context, dir string, debs []string, epoch int64) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	seen := map[string]string{}
	for _, src := range debs {
		name := filepath.Base(src)
		if !strings.HasSuffix(name, ".deb") {
			name += ".deb"
		}
		if other, dup := seen[name]; dup {
			return fmt.Errorf("two .debs named %s: %s and %s", name, other, src)
		}
		seen[name] = src
		if err := linkOrCopy(src, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	for _, index := range []string{"packages", "release"} {
		f, err := os.Create(filepath.Join(dir, strings.ToUpper(index[:1])+index[1:]+".tmp"))
		if err != nil {
			return err
		}
		err = hosttool.Run(ctx, hosttool.Cmd{Name: "apt-ftparchive", Args: []string{index, "."}, Dir: dir, Epoch: epoch, Stdout: f})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := os.Rename(f.Name(), strings.TrimSuffix(f.Name(), ".tmp")); err != nil {
			return err
		}
	}
	return nil
}

func linkOrCopy(src, dest string) error {
	if err := os.Link(src, dest); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dest)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// docExcludes keep documentation out of the image (copyright files stay).
var docExcludes = []string{
	"--dpkgopt=path-exclude=/usr/share/man/*",
	"--dpkgopt=path-exclude=/usr/share/info/*",
	"--dpkgopt=path-exclude=/usr/share/doc/*",
	"--dpkgopt=path-include=/usr/share/doc/*/copyright",
	"--dpkgopt=path-exclude=/usr/share/locale/*",
}

// mmdebstrapArgs is the whole mmdebstrap command line; the customize hooks
// run in order on the host with "$1" the new root.
func mmdebstrapArgs(o Options, repo, root string) []string {
	args := []string{"--variant=apt", "--mode=root", "--format=directory",
		"--architectures=" + o.Arch,
		"--aptopt=Acquire::Languages \"none\"",
		// apt reads the build's own repository: no _apt sandbox needed
		// (and the staging directory may be private to root).
		"--aptopt=APT::Sandbox::User \"root\"",
		// bookworm is merged-/usr: this hook merges the tree itself and
		// installs usr-is-merged from the build's repository (the lock's
		// rootfs closures pin usr-is-merged, not usrmerge, for this).
		"--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
	}
	args = append(args, docExcludes...)
	if len(o.Packages) > 0 {
		args = append(args, "--include="+strings.Join(o.Packages, ","))
	}
	for _, h := range customizeHooks(o) {
		args = append(args, "--customize-hook="+h)
	}
	return append(args, o.Suite, root, "deb [trusted=yes] copy://"+repo+" ./")
}

func customizeHooks(o Options) []string {
	var hooks []string
	for _, dest := range slices.Sorted(maps.Keys(o.ExtraFiles)) {
		hooks = append(hooks, fmt.Sprintf(`mkdir -p "$1"%s && cp --preserve=mode %s "$1"%s`,
			quote(path.Dir(dest)), quote(o.ExtraFiles[dest]), quote(dest)))
	}
	units := append([]string{"systemd-networkd.service"}, o.Units...)
	sources := o.Sources
	if sources == "" {
		sources = "# kiln: role images are immutable; no package sources.\n"
	}
	return append(hooks,
		`mkdir -p "$1"`+StateMount,
		`chroot "$1" systemctl enable `+quoteAll(units),
		// Empty: systemd generates the ID at first boot and, /etc being
		// writable through the overlay, stores it in the state partition.
		`: > "$1"/etc/machine-id`,
		// mmdebstrap copied these from the build host.
		`rm -f "$1"/etc/hostname "$1"/etc/resolv.conf`,
		`printf %s `+quote(sources)+` > "$1"/etc/apt/sources.list`,
	)
}

// quote makes s one shell word.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return strings.Join(q, " ")
}
