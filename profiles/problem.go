package profiles

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a profile, located in its file.
type Problem struct {
	File  string // the profile's Source
	Line  int    // 1-based; 0 when the problem has no place (e.g. an empty file)
	Col   int    // 1-based
	Field string // field path, e.g. machines[2].disks[0].serial
	Msg   string
}

// String prints the problem the way compilers do, so editors can jump to it.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Col)
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError holds every problem found in one profile, in file order,
// so that a user fixes them all in one pass.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// problems collects Problems against a map of field Places, and apart
// from them the warnings: what is valid but questionable.
type problems struct {
	file  string
	pos   Places
	list  []Problem
	warns []Problem
}

// add records a problem at field (or, when the field is absent from the
// file, at its nearest ancestor that is present).
func (ps *problems) add(field, format string, args ...any) {
	at := ps.pos.near(field)
	ps.list = append(ps.list, Problem{
		File: ps.file, Line: at.Line, Col: at.Col, Field: field,
		Msg: fmt.Sprintf(format, args...),
	})
}

// warn records a warning at field, placed as add places problems.
func (ps *problems) warn(field, format string, args ...any) {
	at := ps.pos.near(field)
	ps.warns = append(ps.warns, Problem{
		File: ps.file, Line: at.Line, Col: at.Col, Field: field,
		Msg: fmt.Sprintf(format, args...),
	})
}

// err returns the collected problems sorted by place, or nil.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	sortByPlace(ps.list)
	return &ValidationError{Problems: ps.list}
}

// warnings returns the collected warnings sorted by place, or nil.
func (ps *problems) warnings() []Problem {
	sortByPlace(ps.warns)
	return ps.warns
}

func sortByPlace(list []Problem) {
	slices.SortStableFunc(list, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}

// At returns a problem at field's place in p's file, for checks made after
// loading, against what the profile cannot know by itself (e.g. a release
// version the lock does not pin).
func (p *Profile) At(field, format string, args ...any) Problem {
	at := p.Places.near(field)
	return Problem{File: p.Source, Line: at.Line, Col: at.Col, Field: field, Msg: fmt.Sprintf(format, args...)}
}
