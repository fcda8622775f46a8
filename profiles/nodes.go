package profiles

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// The structural pass: before the YAML is decoded into a Profile, its node
// tree is walked against the Go types. The walk records where each field
// path sits in the file (validation reports by path and looks the place up
// here) and reports unknown keys, wrong kinds and bad sizes with their line
// and column, which yaml.v3's own decode errors lack.

// Place is where something is in the profile's file, 1-based.
type Place struct{ Line, Col int }

// Places maps a field path ("machines[2].disks[0].serial") to the place
// of its key (for fields) or of the item itself (for list items).
type Places map[string]Place

// near returns the place of path, or of its nearest ancestor present in
// the file (a missing required field is reported where its parent is).
func (ps Places) near(path string) Place {
	for {
		if p, ok := ps[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return ps[""]
		}
		path = path[:i]
	}
}

var sizeType = reflect.TypeFor[Size]()

// walk checks node n against type t at path, recording Places.
func walk(n *yaml.Node, t reflect.Type, path string, ps *problems) {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		ps.addAt(n, path, "YAML anchors and aliases are not supported in profiles")
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty value is the zero value; validation decides
	}
	switch {
	case t.Kind() == reflect.Pointer:
		walk(n, t.Elem(), path, ps)
	case t == sizeType:
		walkSize(n, path, ps)
	case t.Kind() == reflect.Struct:
		walkStruct(n, t, path, ps)
	case t.Kind() == reflect.Slice:
		walkSlice(n, t, path, ps)
	case t.Kind() == reflect.Int:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			ps.addAt(n, path, "want a whole number")
		}
	case t.Kind() == reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			ps.addAt(n, path, "want true or false")
		}
	default: // strings
		if n.Kind != yaml.ScalarNode {
			ps.addAt(n, path, "want a single value, not a %s", kindName(n.Kind))
		}
	}
}

func walkStruct(n *yaml.Node, t reflect.Type, path string, ps *problems) {
	if n.Kind != yaml.MappingNode {
		ps.addAt(n, path, "want a mapping of fields, not a %s", kindName(n.Kind))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		fp := join(path, k.Value)
		f, ok := fieldByTag(t, k.Value)
		if !ok {
			ps.addAt(k, fp, "unknown field (known: %s)", strings.Join(tags(t), ", "))
			continue
		}
		if _, dup := ps.pos[fp]; dup {
			ps.addAt(k, fp, "set twice (first on line %d)", ps.pos[fp].Line)
			continue
		}
		ps.pos[fp] = Place{k.Line, k.Column}
		walk(v, f.Type, fp, ps)
	}
}

func walkSlice(n *yaml.Node, t reflect.Type, path string, ps *problems) {
	if n.Kind != yaml.SequenceNode {
		ps.addAt(n, path, "want a list, not a %s", kindName(n.Kind))
		return
	}
	for i, item := range n.Content {
		ip := field(path, i)
		ps.pos[ip] = Place{item.Line, item.Column}
		walk(item, t.Elem(), ip, ps)
	}
}

func walkSize(n *yaml.Node, path string, ps *problems) {
	if n.Kind != yaml.ScalarNode {
		ps.addAt(n, path, "want a size such as 1TB or 50GiB, not a %s", kindName(n.Kind))
		return
	}
	if _, err := ParseSize(n.Value); err != nil {
		ps.addAt(n, path, "%v", err)
	}
}

// addAt records a problem at node n (used before Places are complete).
func (ps *problems) addAt(n *yaml.Node, field, format string, args ...any) {
	ps.list = append(ps.list, Problem{
		File: ps.file, Line: n.Line, Col: n.Column, Field: field,
		Msg: fmt.Sprintf(format, args...),
	})
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag := yamlName(f); tag != "" && tag == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tags(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if tag := yamlName(t.Field(i)); tag != "" {
			out = append(out, tag)
		}
	}
	return out
}

// yamlName is the key of a struct field, "" for fields not in the YAML.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	default:
		return "YAML node"
	}
}
