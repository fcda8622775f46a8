package profiles

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

//go:embed homelab.yaml
var homelab []byte

// DefaultSource is the Source of the embedded default profile.
const DefaultSource = "homelab.yaml"

// Default returns the embedded reference lab (DESIGN.md §2).
func Default() (*Profile, error) {
	return Parse(DefaultSource, homelab)
}

// Load reads and validates the profile at path; problems name path.
func Load(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load profile: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates one profile; name is used as its Source and
// in every problem. Empty Debian settings and the DHCP mode get their
// defaults and MACs are lowercased, so callers see one spelling. Any
// problem is returned as a *ValidationError listing all of them; a valid
// profile carries its warnings in Warnings.
func Parse(name string, data []byte) (*Profile, error) {
	ps := &problems{file: name, pos: Places{"": {1, 1}}}
	root, ok := parseNode(data, ps)
	if !ok {
		return nil, ps.err()
	}
	walk(root, reflect.TypeFor[Profile](), "", ps)
	if err := ps.err(); err != nil {
		return nil, err
	}
	var p Profile
	if err := decodeStrict(data, &p); err != nil {
		// The walk above catches what this decode rejects; this is a
		// safety net for anything it missed.
		ps.add("", "%v", err)
		return nil, ps.err()
	}
	p.Source = name
	p.Places = ps.pos
	applyDefaults(&p)
	validate(&p, ps)
	if err := ps.err(); err != nil {
		return nil, err
	}
	normalize(&p)
	p.Warnings = ps.warnings()
	return &p, nil
}

// parseNode reads exactly one YAML document holding a mapping.
func parseNode(data []byte, ps *problems) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	switch {
	case errors.Is(err, io.EOF):
		ps.add("", "the profile is empty")
		return nil, false
	case err != nil:
		ps.list = append(ps.list, syntaxProblem(ps.file, err))
		return nil, false
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		ps.add("", "want one YAML document, found more (remove the second ---)")
		return nil, false
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		ps.add("", "the profile must be a mapping with name, network and machines")
		return nil, false
	}
	return doc.Content[0], true
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem turns a yaml.v3 syntax error ("yaml: line 3: ...") into a
// Problem; yaml.v3 reports no column for these.
func syntaxProblem(file string, err error) Problem {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return Problem{File: file, Msg: err.Error()}
	}
	line, _ := strconv.Atoi(m[1])
	return Problem{File: file, Line: line, Col: 1, Msg: "YAML syntax: " + m[2]}
}

func decodeStrict(data []byte, p *Profile) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(p)
}

// Defaults for fields a profile may leave empty.
const (
	DefaultSuite  = "bookworm"
	DefaultMirror = "http://deb.debian.org/debian"
)

func applyDefaults(p *Profile) {
	if p.Debian.Suite == "" {
		p.Debian.Suite = DefaultSuite
	}
	if p.Debian.Mirror == "" {
		p.Debian.Mirror = DefaultMirror
	}
	if p.Network.DHCP.Mode == "" {
		p.Network.DHCP.Mode = DHCPProxy
	}
	for _, m := range p.Machines {
		if wg := m.WireGuard; wg != nil && wg.Peer.Keepalive == nil {
			k := DefaultKeepalive
			wg.Peer.Keepalive = &k
		}
	}
	applyServiceDefaults(p)
}
