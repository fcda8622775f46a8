// Package moddep owns reading a kernel's modules.dep and ordering modules
// so that each is loaded after what it depends on (finit_module fails with
// ENOENT on an unresolved symbol otherwise). The initramfs builder uses it
// to pick a closed subset of modules; kiln-init uses it to load them. It
// has no dependencies so that it costs kiln-init nothing.
package moddep

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// ErrUnknown means a wanted module is not in modules.dep.
var ErrUnknown = errors.New("module not in modules.dep")

// Module is one line of modules.dep: a module's path relative to
// /lib/modules/<version> and the paths of every module it needs.
type Module struct {
	Path string
	Deps []string
}

// Name is the module name of a path: "kernel/drivers/block/virtio_blk.ko.xz"
// -> "virtio_blk". Dashes and underscores are the same to the kernel.
func Name(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// Parse reads modules.dep ("path: dep dep ..." per line).
func Parse(r io.Reader) ([]Module, error) {
	var out []Module
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, deps, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(p) == "" {
			return nil, fmt.Errorf("modules.dep line %d: no \"path:\"", n)
		}
		out = append(out, Module{Path: strings.TrimSpace(p), Deps: strings.Fields(deps)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return out, nil
}

// Order returns the modules to load for the wanted names, each after all
// of its dependencies, otherwise in the order wanted. A nil want means
// every module, in file order. Unknown names wrap ErrUnknown; the rest
// is still ordered and returned, so a caller may go on without them.
func Order(mods []Module, want []string) ([]Module, error) {
	byPath := make(map[string]Module, len(mods))
	byName := make(map[string]Module, len(mods))
	for _, m := range mods {
		byPath[m.Path] = m
		byName[Name(m.Path)] = m
	}
	if want == nil {
		for _, m := range mods {
			want = append(want, Name(m.Path))
		}
	}
	var (
		out  []Module
		errs []error
		seen = map[string]bool{}
	)
	// visit is iterative-safe enough: modules.dep already lists the
	// transitive closure, so recursion depth is one or two.
	var visit func(m Module, stack map[string]bool)
	visit = func(m Module, stack map[string]bool) {
		if seen[m.Path] || stack[m.Path] {
			return
		}
		stack[m.Path] = true
		for _, d := range m.Deps {
			dm, ok := byPath[d]
			if !ok {
				errs = append(errs, fmt.Errorf("%s needs %s: %w", Name(m.Path), d, ErrUnknown))
				continue
			}
			visit(dm, stack)
		}
		delete(stack, m.Path)
		seen[m.Path] = true
		out = append(out, m)
	}
	for _, w := range want {
		m, ok := byName[strings.ReplaceAll(w, "-", "_")]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %w", w, ErrUnknown))
			continue
		}
		visit(m, map[string]bool{})
	}
	return out, errors.Join(errs...)
}

// Format writes mods as modules.dep lines.
func Format(w io.Writer, mods []Module) error {
	for _, m := range mods {
		line := m.Path + ":"
		if len(m.Deps) > 0 {
			line += " " + strings.Join(m.Deps, " ")
		}
		if _, err := io.WriteString(w, line+"\n"); err != nil {
			return err
		}
	}
	return nil
}
