package profiles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/invopop/jsonschema"
	sjs "github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/kilnlab/kiln/internal/golden"
)

// schemaID is the schema's $id: where the repository serves it.
const schemaID = "https://raw.githubusercontent.com/kilnlab/kiln/main/profiles/" + SchemaFile

// generateSchema reflects the profile's types into a JSON Schema: field
// names from the yaml tags, descriptions from the Go comments, required
// fields from `jsonschema:"required"` tags, and the enumerations from the
// lists validation checks against (one source for both).
func generateSchema() ([]byte, error) {
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true,
		Mapper:                     mapType,
	}
	if err := r.AddGoComments("github.com/kilnlab/kiln/profiles", "."); err != nil {
		return nil, err
	}
	s := r.Reflect(&Profile{})
	s.ID = schemaID
	for def, props := range map[string]map[string][]string{
		"Machine": {"role": roles, "board": boards, "arch": arches, "firmware": firmwares},
		"Disk":    {"use": uses},
		"DHCP":    {"mode": dhcpModes},
		"Bond":    {"mode": bondModes},
		"Vault":   {"unseal": {UnsealGate, UnsealManual}},
		"K3s":     {"disable": K3sComponents},
	} {
		d, ok := s.Definitions[def]
		if !ok {
			return nil, fmt.Errorf("no definition %s", def)
		}
		for name, values := range props {
			p, ok := d.Properties.Get(name)
			if !ok {
				return nil, fmt.Errorf("%s has no property %s", def, name)
			}
			if p.Type == "array" {
				p = p.Items
			}
			for _, v := range values {
				p.Enum = append(p.Enum, v)
			}
		}
	}
	for _, d := range s.Definitions {
		scalarText(d)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // "<datacenter>", not "\u003cdatacenter\u003e"
	enc.SetIndent("", "  ")
	err := enc.Encode(s)
	return b.Bytes(), err
}

// scalarText lets a free-text string field (no enumeration, no pattern)
// be a number too: kiln reads a scalar's text, so an unquoted hex WWN
// (0x5000c500a1b2c3d4) or an all-digit serial, numbers to YAML, are good
// values.
func scalarText(s *jsonschema.Schema) {
	if s == nil {
		return
	}
	if s.Type == "string" && s.Enum == nil && s.Pattern == "" {
		s.Type = ""
		s.Extras = map[string]any{"type": []string{"string", "number"}}
	}
	scalarText(s.Items)
	if s.Properties != nil {
		for p := s.Properties.Oldest(); p != nil; p = p.Next() {
			scalarText(p.Value)
		}
	}
}

// mapType gives the types that decode from YAML in their own way their
// schema: a Size is a number of bytes or a string with a unit.
func mapType(t reflect.Type) *jsonschema.Schema {
	if t != reflect.TypeFor[Size]() {
		return nil
	}
	return &jsonschema.Schema{
		Description: "a size: bytes, or a whole number with a unit: KB, MB, GB, TB (decimal, as on a disk's label) or KiB, MiB, GiB, TiB",
		OneOf: []*jsonschema.Schema{
			{Type: "integer", Minimum: "0"},
			{Type: "string", Pattern: `^\s*[0-9]+\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$`},
		},
	}
}

// TestJSONSchema: the committed schema is what the types generate (run
// with -update after changing them).
func TestJSONSchema(t *testing.T) {
	got, err := generateSchema()
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, SchemaFile, got)
}

// The embedded profile names the schema beside it for editors
// (yaml-language-server), as the README tells users to.
func TestSchemaModeline(t *testing.T) {
	const want = "# yaml-language-server: $schema=" + SchemaFile + "\n"
	if !bytes.HasPrefix(homelab, []byte(want)) {
		t.Errorf("homelab.yaml does not start with %q", want)
	}
}

// TestSchemaValidates: every good profile (and the embedded one) is valid
// by the schema; every bad one whose fault is the profile's shape (an
// unknown key, a wrong kind, a missing field, a value not in a list) is
// not, as Load refuses it too.
func TestSchemaValidates(t *testing.T) {
	var doc any
	if err := json.Unmarshal(JSONSchema(), &doc); err != nil {
		t.Fatal(err)
	}
	c := sjs.NewCompiler()
	if err := c.AddResource(schemaID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(schemaID)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := filepath.Glob("testdata/good-*.yaml")
	warn, _ := filepath.Glob("testdata/warn-*.yaml")
	for _, f := range append(append(good, warn...), "homelab.yaml") {
		if err := sch.Validate(yamlDoc(t, f)); err != nil {
			t.Errorf("%s: the schema refuses a good profile: %v", f, err)
		}
	}
	for _, f := range []string{"bad-unknown-key.yaml", "bad-types.yaml", "bad-enums.yaml", "bad-required.yaml", "bad-wireguard-types.yaml", "bad-empty.yaml"} {
		f = filepath.Join("testdata", f)
		if _, err := Load(f); err == nil {
			t.Fatalf("%s: Load accepts it", f)
		}
		if err := sch.Validate(yamlDoc(t, f)); err == nil {
			t.Errorf("%s: the schema accepts a profile of the wrong shape", f)
		}
	}
}

// yamlDoc is the YAML file f as the JSON document a schema validator
// reads (integers as json.Number).
func yamlDoc(t *testing.T, f string) any {
	t.Helper()
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", f, err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", f, err)
	}
	doc, err := sjs.UnmarshalJSON(strings.NewReader(string(j)))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}
