package debian

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Resolution errors.
var (
	// ErrNoPackage: a root names no package (real or virtual) in the index.
	ErrNoPackage = errors.New("no such package")
	// ErrUnsatisfiable: no alternative of a dependency is in the index at a
	// fitting version.
	ErrUnsatisfiable = errors.New("unsatisfiable dependency")
)

// Index is one architecture's view of a suite: its own packages plus
// Architecture: all, from every component read.
type Index struct {
	Arch      string
	pkgs      []Package
	byName    map[string][]int
	providers map[string][]provided
}

type provided struct {
	pkg     int
	version string // the versioned Provides' version, or empty
}

// NewIndex indexes pkgs for arch; packages of other architectures are
// dropped.
func NewIndex(arch string, pkgs []Package) *Index {
	ix := &Index{Arch: arch, byName: map[string][]int{}, providers: map[string][]provided{}}
	for _, p := range pkgs {
		if p.Architecture != arch && p.Architecture != "all" {
			continue
		}
		i := len(ix.pkgs)
		ix.pkgs = append(ix.pkgs, p)
		ix.byName[p.Name] = append(ix.byName[p.Name], i)
		for _, pr := range p.Provides {
			ix.providers[pr.Name] = append(ix.providers[pr.Name], provided{pkg: i, version: pr.Version})
		}
	}
	return ix
}

// Len is the number of packages indexed.
func (ix *Index) Len() int { return len(ix.pkgs) }

// Lookup returns the highest version of the real package name.
func (ix *Index) Lookup(name string) (Package, bool) {
	best := -1
	for _, i := range ix.byName[name] {
		if best < 0 || CompareVersions(ix.pkgs[i].Version, ix.pkgs[best].Version) > 0 {
			best = i
		}
	}
	if best < 0 {
		return Package{}, false
	}
	return ix.pkgs[best], true
}

// Required names every Priority: required or Essential: yes package, the
// set a Debian root filesystem always has (what mmdebstrap installs first).
func (ix *Index) Required() []string {
	seen := map[string]bool{}
	var names []string
	for _, p := range ix.pkgs {
		if (p.Priority == "required" || p.Essential) && !seen[p.Name] {
			seen[p.Name] = true
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return names
}

// Closure returns roots plus everything their Depends and Pre-Depends pull
// in, sorted by name. For each dependency group it keeps the group if a
// package already chosen satisfies it, else takes the first alternative the
// index can satisfy (a real package at a fitting version, else a provider).
// The result is complete - every group of every member has a member in the
// set - which is what apt needs when it resolves again from exactly these
// files. Roots may be virtual names.
func (ix *Index) Closure(roots []string) ([]Package, error) {
	r := resolver{ix: ix, chosen: map[int]bool{}}
	for _, name := range roots {
		i, ok := ix.candidate(Relation{Name: name}, r.chosen)
		if !ok {
			return nil, fmt.Errorf("%w: %s (%s)", ErrNoPackage, name, ix.Arch)
		}
		r.add(i)
	}
	for len(r.queue) > 0 {
		i := r.queue[0]
		r.queue = r.queue[1:]
		p := ix.pkgs[i]
		for _, group := range append(append([]Alternatives{}, p.PreDepends...), p.Depends...) {
			if err := r.satisfy(p, group); err != nil {
				return nil, err
			}
		}
	}
	out := make([]Package, 0, len(r.chosen))
	for i := range r.chosen {
		out = append(out, ix.pkgs[i])
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

type resolver struct {
	ix     *Index
	chosen map[int]bool
	queue  []int
}

func (r *resolver) add(i int) {
	if r.chosen[i] {
		return
	}
	// One version per name: a second, different version of a chosen
	// name would make the flat repository ambiguous.
	for j := range r.chosen {
		if r.ix.pkgs[j].Name == r.ix.pkgs[i].Name {
			return
		}
	}
	r.chosen[i] = true
	r.queue = append(r.queue, i)
}

func (r *resolver) satisfy(p Package, group Alternatives) error {
	for _, rel := range group {
		if r.ix.satisfiedBy(rel, r.chosen) {
			return nil
		}
	}
	for _, rel := range group {
		if i, ok := r.ix.candidate(rel, r.chosen); ok {
			r.add(i)
			return nil
		}
	}
	alts := make([]string, len(group))
	for k, rel := range group {
		alts[k] = rel.String()
	}
	return fmt.Errorf("%w: %s %s depends on %s (%s)", ErrUnsatisfiable, p.Name, p.Version, strings.Join(alts, " | "), r.ix.Arch)
}

// archOK: ":any" and ":native" match this index; another architecture
// qualifier cannot be satisfied from a single-architecture index.
func (ix *Index) archOK(rel Relation) bool {
	switch rel.ArchQual {
	case "", "any", "native", ix.Arch:
		return true
	}
	return false
}

// satisfiedBy reports whether a package in set satisfies rel.
func (ix *Index) satisfiedBy(rel Relation, set map[int]bool) bool {
	if !ix.archOK(rel) {
		return false
	}
	for _, i := range ix.byName[rel.Name] {
		if set[i] && rel.Satisfied(ix.pkgs[i].Version) {
			return true
		}
	}
	for _, pr := range ix.providers[rel.Name] {
		if set[pr.pkg] && rel.Satisfied(pr.version) {
			return true
		}
	}
	return false
}

// candidate picks the package that would satisfy rel: the highest fitting
// version of the real package, else a provider - one already chosen, else
// the one of highest priority, then by name, so locks are reproducible.
func (ix *Index) candidate(rel Relation, chosen map[int]bool) (int, bool) {
	if !ix.archOK(rel) {
		return 0, false
	}
	best := -1
	for _, i := range ix.byName[rel.Name] {
		if rel.Satisfied(ix.pkgs[i].Version) && (best < 0 || CompareVersions(ix.pkgs[i].Version, ix.pkgs[best].Version) > 0) {
			best = i
		}
	}
	if best >= 0 {
		return best, true
	}
	for _, pr := range ix.providers[rel.Name] {
		if !rel.Satisfied(pr.version) {
			continue
		}
		if chosen[pr.pkg] {
			return pr.pkg, true
		}
		if best < 0 || ix.better(pr.pkg, best) {
			best = pr.pkg
		}
	}
	return best, best >= 0
}

func (ix *Index) better(a, b int) bool {
	pa, pb := priorityRank(ix.pkgs[a].Priority), priorityRank(ix.pkgs[b].Priority)
	if pa != pb {
		return pa < pb
	}
	return ix.pkgs[a].Name < ix.pkgs[b].Name
}

func priorityRank(p string) int {
	switch p {
	case "required":
		return 0
	case "important":
		return 1
	case "standard":
		return 2
	case "optional":
		return 3
	}
	return 4
}
