package debian

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRelations(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Alternatives
	}{
		{"", nil},
		{"libc6", []Alternatives{{{Name: "libc6"}}}},
		{"libc6:any (>= 2.34), a | b (<< 2~)", []Alternatives{
			{{Name: "libc6", ArchQual: "any", Op: ">=", Version: "2.34"}},
			{{Name: "a"}, {Name: "b", Op: "<<", Version: "2~"}},
		}},
		{"x (>2)", []Alternatives{{{Name: "x", Op: ">=", Version: "2"}}}},
		{"x(=1:2.3-4)", []Alternatives{{{Name: "x", Op: "=", Version: "1:2.3-4"}}}},
	} {
		got, err := ParseRelations(tc.in)
		if err != nil {
			t.Errorf("ParseRelations(%q): %v", tc.in, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("ParseRelations(%q) -want +got:\n%s", tc.in, d)
		}
	}
	for _, bad := range []string{"a,,b", "a (>= )", "a (~ 1)", "a (>= 1", "a [amd64]", ":any", "a b"} {
		if _, err := ParseRelations(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseRelations(%q) = %v, want ErrSyntax", bad, err)
		}
	}
}

func TestRelationSatisfied(t *testing.T) {
	for _, tc := range []struct {
		rel  Relation
		v    string
		want bool
	}{
		{Relation{Name: "a"}, "", true},
		{Relation{Name: "a", Op: ">=", Version: "2"}, "", false},
		{Relation{Name: "a", Op: ">=", Version: "2"}, "2", true},
		{Relation{Name: "a", Op: ">>", Version: "2"}, "2", false},
		{Relation{Name: "a", Op: "<<", Version: "2"}, "2~b", true},
		{Relation{Name: "a", Op: "<=", Version: "2"}, "2", true},
		{Relation{Name: "a", Op: "=", Version: "1:2"}, "1:2", true},
		{Relation{Name: "a", Op: "=", Version: "1:2"}, "2", false},
	} {
		if got := tc.rel.Satisfied(tc.v); got != tc.want {
			t.Errorf("%v satisfied by %q = %v, want %v", tc.rel, tc.v, got, tc.want)
		}
	}
}
