package lock

import (
	"fmt"
	"strings"

	"github.com/kilnlab/kiln/image/debian"
)

// Set modes: how a Spec's roots become pins.
const (
	// ModeExact pins exactly the named packages, no dependencies: files
	// kiln only extracts (ipxe, syslinux-common, systemd-boot-efi).
	ModeExact = "exact"
	// ModeKernel treats each root as a kernel metapackage
	// (linux-image-amd64) and pins the linux-image-* package it depends on
	// today, without the metapackage's own dependencies.
	ModeKernel = "kernel"
	// ModeClosure pins the roots plus every Priority: required and
	// Essential: yes package plus their dependency closure: the complete
	// set of files a root filesystem is installed from.
	ModeClosure = "closure"
)

// Spec is one set request.
type Spec struct {
	Name  string   `json:"name"`
	Arch  string   `json:"arch"`
	Mode  string   `json:"mode"`
	Roots []string `json:"roots"`
}

// mmdebstrapRoots are added to every closure. The rootfs must be built
// with mmdebstrap --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr: that
// hook merges /usr itself and installs usr-is-merged from the given
// repository, and having usr-is-merged chosen first keeps
// init-system-helpers' "usrmerge | usr-is-merged" from pulling usrmerge
// and perl in. (Measured: mmdebstrap --variant=apt with that hook builds
// the rootfs-storage-amd64 set from a copy:// flat repo of exactly the
// locked files; without the hook usr-is-merged's preinst refuses.)
var mmdebstrapRoots = []string{"usr-is-merged"}

// KernelSpec pins the current Debian kernel of arch.
func KernelSpec(arch string) Spec {
	return Spec{Name: "kernel-" + arch, Arch: arch, Mode: ModeKernel, Roots: []string{"linux-image-" + arch}}
}

// BootSpec pins the boot loaders kiln copies files out of (x86 only).
func BootSpec(arch string) Spec {
	return Spec{Name: "boot-" + arch, Arch: arch, Mode: ModeExact, Roots: []string{"ipxe", "syslinux-common", "systemd-boot-efi"}}
}

// RootfsSpec pins the closure of a role's package list (the caller owns
// role definitions; this package does not import them).
func RootfsSpec(role, arch string, pkgs []string) Spec {
	roots := append(append([]string{}, mmdebstrapRoots...), pkgs...)
	return Spec{Name: "rootfs-" + role + "-" + arch, Arch: arch, Mode: ModeClosure, Roots: dedupe(roots)}
}

// DefaultSpecs is what the lock in the repo holds: the amd64 kernel and
// boot loaders, a rootfs per role (role -> its package list, which package
// roles owns), and the arm64 kernel plus raspi-firmware for the Pi gate.
func DefaultSpecs(roles map[string][]string) []Spec {
	specs := []Spec{KernelSpec("amd64"), BootSpec("amd64"), KernelSpec("arm64"),
		{Name: "firmware-arm64", Arch: "arm64", Mode: ModeExact, Roots: []string{"raspi-firmware"}}}
	for role, pkgs := range roles {
		specs = append(specs, RootfsSpec(role, "amd64", pkgs))
	}
	return specs
}

// resolve turns a spec into packages using an index of its arch.
func resolve(ix *debian.Index, s Spec) ([]debian.Package, error) {
	switch s.Mode {
	case ModeExact:
		return lookupAll(ix, s.Roots)
	case ModeKernel:
		return kernels(ix, s.Roots)
	case ModeClosure:
		return ix.Closure(dedupe(append(ix.Required(), s.Roots...)))
	}
	return nil, fmt.Errorf("set %s: unknown mode %q", s.Name, s.Mode)
}

func lookupAll(ix *debian.Index, names []string) ([]debian.Package, error) {
	var out []debian.Package
	for _, n := range names {
		p, ok := ix.Lookup(n)
		if !ok {
			return nil, fmt.Errorf("%w: %s (%s)", debian.ErrNoPackage, n, ix.Arch)
		}
		out = append(out, p)
	}
	return out, nil
}

func kernels(ix *debian.Index, metas []string) ([]debian.Package, error) {
	var out []debian.Package
	for _, m := range metas {
		meta, ok := ix.Lookup(m)
		if !ok {
			return nil, fmt.Errorf("%w: %s (%s)", debian.ErrNoPackage, m, ix.Arch)
		}
		target, err := kernelTarget(ix, meta)
		if err != nil {
			return nil, err
		}
		out = append(out, target)
	}
	return out, nil
}

// kernelTarget finds the linux-image-<abi>-<flavour> package a metapackage
// depends on, at the exact version it names.
func kernelTarget(ix *debian.Index, meta debian.Package) (debian.Package, error) {
	for _, group := range meta.Depends {
		for _, rel := range group {
			if !strings.HasPrefix(rel.Name, "linux-image-") {
				continue
			}
			if p, ok := ix.Lookup(rel.Name); ok && rel.Satisfied(p.Version) {
				return p, nil
			}
		}
	}
	return debian.Package{}, fmt.Errorf("%w: %s %s names no linux-image-* in the index", debian.ErrUnsatisfiable, meta.Name, meta.Version)
}

func dedupe(names []string) []string {
	seen := map[string]bool{}
	out := names[:0:0]
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
