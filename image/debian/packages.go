package debian

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Package is one binary package stanza of a Packages index, reduced to the
// fields kiln pins and resolves with.
type Package struct {
	Name         string
	Version      string
	Architecture string
	Filename     string // pool path relative to the mirror root
	Size         int64
	SHA256       string
	Priority     string
	Essential    bool
	MultiArch    string
	Depends      []Alternatives
	PreDepends   []Alternatives
	Provides     []Relation
}

// ParsePackages reads a Packages index. Stanzas without Package, Version,
// Filename, Size and SHA256 are errors: a pin needs all of them.
func ParsePackages(r io.Reader) ([]Package, error) {
	var pkgs []Package
	err := readParagraphs(r, packageFields, func(p Paragraph) error {
		pkg, err := packageFrom(p)
		if err != nil {
			return err
		}
		pkgs = append(pkgs, pkg)
		return nil
	})
	return pkgs, err
}

// packageFields are the fields packageFrom reads, canonically spelled.
var packageFields = map[string]bool{
	"Package": true, "Version": true, "Architecture": true, "Filename": true, "Size": true,
	"Sha256": true, "Priority": true, "Essential": true, "Multi-Arch": true,
	"Depends": true, "Pre-Depends": true, "Provides": true,
}

func packageFrom(p Paragraph) (Package, error) {
	pkg := Package{
		Name:         p["Package"],
		Version:      p["Version"],
		Architecture: p["Architecture"],
		Filename:     p["Filename"],
		SHA256:       strings.ToLower(p["Sha256"]),
		Priority:     p["Priority"],
		Essential:    strings.EqualFold(p["Essential"], "yes"),
		MultiArch:    p["Multi-Arch"],
	}
	for _, f := range []struct{ name, value string }{
		{"Package", pkg.Name}, {"Version", pkg.Version}, {"Filename", pkg.Filename}, {"SHA256", pkg.SHA256},
	} {
		if f.value == "" {
			return Package{}, fmt.Errorf("%w: package %q: no %s", ErrSyntax, pkg.Name, f.name)
		}
	}
	if !isHexSHA256(pkg.SHA256) {
		return Package{}, fmt.Errorf("%w: package %q: bad SHA256 %q", ErrSyntax, pkg.Name, pkg.SHA256)
	}
	size, err := strconv.ParseInt(p["Size"], 10, 64)
	if err != nil || size < 0 {
		return Package{}, fmt.Errorf("%w: package %q: bad Size %q", ErrSyntax, pkg.Name, p["Size"])
	}
	pkg.Size = size
	if pkg.Depends, err = ParseRelations(p["Depends"]); err != nil {
		return Package{}, fmt.Errorf("package %q Depends: %w", pkg.Name, err)
	}
	if pkg.PreDepends, err = ParseRelations(p["Pre-Depends"]); err != nil {
		return Package{}, fmt.Errorf("package %q Pre-Depends: %w", pkg.Name, err)
	}
	provides, err := ParseRelations(p["Provides"])
	if err != nil {
		return Package{}, fmt.Errorf("package %q Provides: %w", pkg.Name, err)
	}
	for _, alts := range provides {
		pkg.Provides = append(pkg.Provides, alts...)
	}
	return pkg, nil
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
