package debian

import (
	"fmt"
	"strings"
)

// Relation is one package reference in a Depends-style field, e.g.
// "libc6:any (>= 2.34)": Name libc6, ArchQual any, Op ">=", Version 2.34.
type Relation struct {
	Name     string
	ArchQual string // after ':' (any, native, amd64), empty if none
	Op       string // <<, <=, =, >=, >> or empty
	Version  string
}

// Alternatives is one comma-separated group: any one of them satisfies it.
type Alternatives []Relation

// String formats r as it appears in a control file.
func (r Relation) String() string {
	s := r.Name
	if r.ArchQual != "" {
		s += ":" + r.ArchQual
	}
	if r.Op != "" {
		s += " (" + r.Op + " " + r.Version + ")"
	}
	return s
}

// ParseRelations parses a Depends/Pre-Depends/Provides value. Architecture
// restrictions ("[amd64]") and build profiles ("<!nocheck>") never appear
// in binary Packages indexes and are rejected rather than guessed at.
func ParseRelations(s string) ([]Alternatives, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []Alternatives
	for _, group := range strings.Split(s, ",") {
		var alts Alternatives
		for _, one := range strings.Split(group, "|") {
			r, err := parseRelation(one)
			if err != nil {
				return nil, err
			}
			alts = append(alts, r)
		}
		out = append(out, alts)
	}
	return out, nil
}

func parseRelation(s string) (Relation, error) {
	s = strings.TrimSpace(s)
	name, rest, _ := strings.Cut(s, "(")
	name = strings.TrimSpace(name)
	if name == "" || strings.ContainsAny(name, " \t\n[]<>") {
		return Relation{}, fmt.Errorf("%w: relation %q", ErrSyntax, s)
	}
	var r Relation
	r.Name, r.ArchQual, _ = strings.Cut(name, ":")
	if r.Name == "" {
		return Relation{}, fmt.Errorf("%w: relation %q", ErrSyntax, s)
	}
	if rest == "" && !strings.Contains(s, "(") {
		return r, nil
	}
	inner, tail, ok := strings.Cut(rest, ")")
	if !ok || strings.TrimSpace(tail) != "" {
		return Relation{}, fmt.Errorf("%w: relation %q", ErrSyntax, s)
	}
	inner = strings.TrimSpace(inner)
	for _, op := range []string{"<<", "<=", ">=", ">>", "=", "<", ">"} {
		if v, ok := strings.CutPrefix(inner, op); ok {
			r.Op, r.Version = normalizeOp(op), strings.TrimSpace(v)
			break
		}
	}
	if r.Op == "" || r.Version == "" || strings.ContainsAny(r.Version, " \t\n") {
		return Relation{}, fmt.Errorf("%w: relation %q", ErrSyntax, s)
	}
	return r, nil
}

// normalizeOp maps the obsolete "<" and ">" (meaning <= and >=) to their
// modern spelling.
func normalizeOp(op string) string {
	switch op {
	case "<":
		return "<="
	case ">":
		return ">="
	}
	return op
}

// Satisfied reports whether version v meets r's constraint.
func (r Relation) Satisfied(v string) bool {
	if r.Op == "" {
		return true
	}
	if v == "" {
		return false
	}
	c := CompareVersions(v, r.Version)
	switch r.Op {
	case "<<":
		return c < 0
	case "<=":
		return c <= 0
	case "=":
		return c == 0
	case ">=":
		return c >= 0
	case ">>":
		return c > 0
	}
	return false
}
