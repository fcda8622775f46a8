// Package kmod owns loading, at run time, the kernel modules an initramfs
// built by image/initramfs carries (the installer's and the gate's):
// every module of /lib/modules/<release>/modules.dep (the builder put only
// the ones kiln needs there), each after its dependencies, with
// finit_module(2) and the parameters moddep.OptionsFile gives it. Debian
// builds virtio, ext4, vfat, squashfs and overlay as modules, so nothing
// else in kiln-init works before this has run.
package kmod

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kilnlab/kiln/image/initramfs/moddep"
)

// Loader loads modules from Dir, usually /lib/modules/<uname -r>.
type Loader struct {
	Dir string
	Log *slog.Logger
	// Load loads one module file with its parameters ("" for none);
	// nil means finit_module(2).
	Load func(path, params string) error
}

// Dir returns /lib/modules/<running kernel release> under root.
func Dir(root string) (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return filepath.Join(root, "lib/modules", unix.ByteSliceToString(u.Release[:])), nil
}

// LoadAll loads every module of modules.dep. A module that fails is
// logged and the rest still load (a NIC driver for absent hardware must not
// stop the disk drivers); the joined failures are returned for the caller
// to report. It returns how many modules are loaded (or were already).
func (l Loader) LoadAll() (int, error) {
	f, err := os.Open(filepath.Join(l.Dir, "modules.dep"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	mods, err := moddep.Parse(f)
	if err != nil {
		return 0, err
	}
	order, err := moddep.Order(mods, nil)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	params, err := l.options()
	if err != nil {
		// Still load: without its parameters a module may do too much
		// (bonding makes a bond0), but without the module at all the
		// disk or the NIC is missing.
		l.Log.Warn("module parameters", "err", err)
		errs = append(errs, err)
	}
	load := l.Load
	if load == nil {
		load = finit
	}
	n := 0
	for _, m := range order {
		if err := load(filepath.Join(l.Dir, m.Path), params[moddep.Name(m.Path)]); err != nil {
			l.Log.Warn("load module", "module", moddep.Name(m.Path), "params", params[moddep.Name(m.Path)], "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", moddep.Name(m.Path), err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// options reads the modules' parameters; a tree without moddep.OptionsFile
// has none.
func (l Loader) options() (map[string]string, error) {
	f, err := os.Open(filepath.Join(l.Dir, moddep.OptionsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return moddep.ParseOptions(f)
}

// finit loads one module file with its parameters; one already loaded (or
// built in) is fine, whatever parameters it was loaded with.
func finit(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if strings.HasSuffix(path, ".xz") || strings.HasSuffix(path, ".zst") || strings.HasSuffix(path, ".gz") {
		// The kernel decompresses (CONFIG_MODULE_DECOMPRESS) so that
		// the initramfs needs no decompressor.
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), params, flags); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("finit_module: %w", err)
	}
	return nil
}
