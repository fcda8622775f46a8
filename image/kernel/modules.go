package kernel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// ErrUnknownModule: a wanted module is neither in modules.dep nor built in.
var ErrUnknownModule = errors.New("no such kernel module")

// DB is what modules.dep, modules.builtin, modules.softdep and
// modules.alias say about one kernel's modules, by normalized name
// ('-' read as '_', as modprobe does).
type DB struct {
	paths   map[string]string   // name -> path relative to lib/modules/<ver>
	deps    map[string][]string // name -> dependency names, as listed
	builtin map[string]bool
	softPre map[string][]string // name -> "pre:" softdep names, aliases resolved
}

// Module is one entry of a load list.
type Module struct {
	Name string `json:"name"`
	Path string `json:"path"` // relative to lib/modules/<ver>, e.g. kernel/fs/ext4/ext4.ko
	// Soft: pulled in by a softdep (ext4's crypto-crc32c), which may name
	// several providers of which only some load on a given CPU
	// (crc32c_intel needs SSE4.2): a loader should not fail on these.
	Soft bool `json:"soft,omitempty"`
}

// Closure is the result of resolving wanted module names.
type Closure struct {
	// Load is every module to load, each after its dependencies.
	Load []Module
	// Builtin are the wanted names the kernel has built in.
	Builtin []string
}

// ModuleName is the normalized name of a module path or name.
func ModuleName(p string) string {
	base := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(base, ".ko"), "-", "_")
}

// ParseDB reads the module index files; builtin, softdep and alias may be
// nil.
func ParseDB(dep, builtin, softdep, alias io.Reader) (*DB, error) {
	db := &DB{paths: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}, softPre: map[string][]string{}}
	err := eachLine(dep, func(line string) error {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok || mod == "" {
			return fmt.Errorf("modules.dep: bad line %q", line)
		}
		name := ModuleName(mod)
		db.paths[name] = mod
		for _, d := range strings.Fields(deps) {
			db.deps[name] = append(db.deps[name], ModuleName(d))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := eachLine(builtin, func(line string) error {
		db.builtin[ModuleName(line)] = true
		return nil
	}); err != nil {
		return nil, err
	}
	aliases := map[string][]string{}
	if err := eachLine(alias, func(line string) error {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "alias" {
			aliases[f[1]] = append(aliases[f[1]], ModuleName(f[2]))
		}
		return nil
	}); err != nil {
		return nil, err
	}
	err = eachLine(softdep, func(line string) error {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "softdep" {
			return nil
		}
		name, pre := ModuleName(f[1]), false
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				pre = true
			case "post:":
				pre = false
			default:
				if pre {
					db.softPre[name] = append(db.softPre[name], db.resolveAlias(aliases, w)...)
				}
			}
		}
		return nil
	})
	return db, err
}

// resolveAlias maps a softdep word to module names: itself if it is a
// module, else every module the alias names.
func (db *DB) resolveAlias(aliases map[string][]string, w string) []string {
	if n := ModuleName(w); db.paths[n] != "" || db.builtin[n] {
		return []string{n}
	}
	return aliases[w]
}

func eachLine(r io.Reader, fn func(string) error) error {
	if r == nil {
		return nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Closure resolves wanted names to a load list: dependencies before the
// modules needing them (deepest first, as modprobe loads them), pre
// softdeps before their module, wanted order kept otherwise. Built-in
// names are reported, not loaded; unknown names are ErrUnknownModule.
func (db *DB) Closure(wanted []string) (Closure, error) {
	r := closer{db: db, index: map[string]int{}, visiting: map[string]bool{}}
	var c Closure
	for _, w := range wanted {
		name := ModuleName(w)
		if db.paths[name] == "" && db.builtin[name] {
			c.Builtin = append(c.Builtin, name)
			continue
		}
		if err := r.visit(name, false); err != nil {
			return Closure{}, err
		}
	}
	c.Load = r.load
	return c, nil
}

type closer struct {
	db       *DB
	load     []Module
	index    map[string]int
	visiting map[string]bool
}

func (r *closer) visit(name string, soft bool) error {
	if i, ok := r.index[name]; ok {
		if r.load[i].Soft && !soft {
			// Needed for real after all: so are its dependencies.
			r.load[i].Soft = false
			for _, d := range r.db.deps[name] {
				if err := r.visit(d, false); err != nil {
					return err
				}
			}
		}
		return nil
	}
	p := r.db.paths[name]
	switch {
	case p == "" && r.db.builtin[name]:
		return nil
	case p == "" && soft:
		return nil
	case p == "":
		return fmt.Errorf("%w: %s (not in modules.dep or modules.builtin)", ErrUnknownModule, name)
	case r.visiting[name]:
		return fmt.Errorf("kernel modules: dependency cycle through %s", name)
	}
	r.visiting[name] = true
	for _, s := range r.db.softPre[name] {
		if err := r.visit(s, true); err != nil {
			return err
		}
	}
	// modules.dep lists the deepest dependencies last; modprobe loads
	// the list backwards.
	deps := r.db.deps[name]
	for i := len(deps) - 1; i >= 0; i-- {
		if err := r.visit(deps[i], soft); err != nil {
			return err
		}
	}
	delete(r.visiting, name)
	r.index[name] = len(r.load)
	r.load = append(r.load, Module{Name: name, Path: p, Soft: soft})
	return nil
}
