package initramfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnlab/kiln/image/initramfs/moddep"
)

// ErrNoRelease means a modules tree does not hold exactly one kernel
// release directory with a modules.dep.
var ErrNoRelease = errors.New("modules tree needs exactly one <release>/modules.dep (run depmod -b)")

// Release returns the kernel release directory name in a lib/modules tree.
func Release(modulesDir string) (string, error) {
	ents, err := os.ReadDir(modulesDir)
	if err != nil {
		return "", err
	}
	var rel []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(modulesDir, e.Name(), "modules.dep")); err == nil {
			rel = append(rel, e.Name())
		}
	}
	if len(rel) != 1 {
		return "", fmt.Errorf("%s: found %v: %w", modulesDir, rel, ErrNoRelease)
	}
	return rel[0], nil
}

// StageModules copies the wanted modules and their dependencies from a
// lib/modules tree into dst/<release>/, with a modules.dep listing just
// them in load order (kiln-init loads every line) and, when any of them
// has ModuleParams, a moddep.OptionsFile with those.
func StageModules(modulesDir, dst string, want []string, log *slog.Logger) error {
	rel, err := Release(modulesDir)
	if err != nil {
		return err
	}
	srcRel := filepath.Join(modulesDir, rel)
	b, err := os.ReadFile(filepath.Join(srcRel, "modules.dep"))
	if err != nil {
		return err
	}
	all, err := moddep.Parse(bytes.NewReader(b))
	if err != nil {
		return err
	}
	loadable := want
	if want != nil {
		loadable = notBuiltin(srcRel, want, log)
	}
	mods, err := moddep.Order(all, loadable)
	if err != nil {
		// In neither list: this arch's kernel lacks it, and so do the
		// machines that boot it (a driver for hardware it cannot have).
		log.Info("modules not in this kernel (neither loadable nor built in), skipped", "err", err)
	}
	dstRel := filepath.Join(dst, rel)
	if err := os.MkdirAll(dstRel, 0o755); err != nil { // also with no module to stage
		return err
	}
	for _, m := range mods {
		if err := copyFile(filepath.Join(srcRel, m.Path), filepath.Join(dstRel, m.Path)); err != nil {
			return err
		}
	}
	var dep bytes.Buffer
	if err := moddep.Format(&dep, mods); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dstRel, "modules.dep"), dep.Bytes(), 0o644); err != nil {
		return err
	}
	return stageOptions(dstRel, mods)
}

// notBuiltin is want without the modules the kernel has built in (its
// modules.builtin; Debian's arm64 kernel builds in some that amd64's
// loads), which need no staging: nothing is wrong, so it says so at
// debug level only.
func notBuiltin(srcRel string, want []string, log *slog.Logger) []string {
	b, err := os.ReadFile(filepath.Join(srcRel, "modules.builtin"))
	if err != nil {
		return want
	}
	builtin := map[string]bool{}
	for _, l := range strings.Fields(string(b)) {
		builtin[moddep.Name(l)] = true
	}
	out := make([]string, 0, len(want)) // not nil: Order takes nil as all
	for _, w := range want {
		if builtin[strings.ReplaceAll(w, "-", "_")] {
			log.Debug("module built into the kernel: nothing to stage", "module", w)
			continue
		}
		out = append(out, w)
	}
	return out
}

// stageOptions writes the ModuleParams of mods, if any, next to their
// modules.dep.
func stageOptions(dstRel string, mods []moddep.Module) error {
	all, params := ModuleParams(), map[string]string{}
	for _, m := range mods {
		if p, ok := all[moddep.Name(m.Path)]; ok {
			params[moddep.Name(m.Path)] = p
		}
	}
	if len(params) == 0 {
		return nil
	}
	var b bytes.Buffer
	if err := moddep.FormatOptions(&b, params); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dstRel, moddep.OptionsFile), b.Bytes(), 0o644)
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
