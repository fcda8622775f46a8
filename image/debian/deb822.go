// Package debian is kiln's Debian archive client: it downloads a suite's
// InRelease, checks its signature with gpgv against the Debian archive
// keyring, takes the index hashes from the verified text only, downloads and
// verifies the Packages indexes, parses their deb822 stanzas, and resolves
// the dependency closure of a set of root packages. It knows nothing about
// lockfiles or kernels; image/lock and image/kernel build on it.
package debian

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Paragraph is one deb822 stanza: field name -> value. Continuation lines
// are kept, joined by "\n" with their leading blank removed, so multi-line
// fields (SHA256 in a Release file) can be split into lines.
type Paragraph map[string]string

// ErrSyntax reports malformed deb822 input.
var ErrSyntax = errors.New("deb822 syntax error")

// maxLine bounds one physical line; Packages files have long Depends lines,
// never megabytes.
const maxLine = 4 << 20

// ReadParagraphs calls fn for each stanza of r, in order. Field names are
// case-insensitive in deb822; they are stored in their canonical form
// (first letter and letters after '-' upper case) so lookups need not fold.
func ReadParagraphs(r io.Reader, fn func(Paragraph) error) error {
	return readParagraphs(r, nil, fn)
}

// readParagraphs is ReadParagraphs keeping only the fields keep names (all
// if keep is nil): a Packages index is mostly descriptions kiln never reads.
func readParagraphs(r io.Reader, keep map[string]bool, fn func(Paragraph) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	p := Paragraph{}
	last := ""
	lineNo := 0
	flush := func() error {
		if len(p) == 0 {
			return nil
		}
		err := fn(p)
		p, last = Paragraph{}, ""
		return err
	}
	for sc.Scan() {
		lineNo++
		line := sc.Bytes()
		switch {
		case len(bytes.TrimSpace(line)) == 0:
			if err := flush(); err != nil {
				return err
			}
		case line[0] == '#':
			// deb822 comment line.
		case line[0] == ' ' || line[0] == '\t':
			if last == "" {
				return fmt.Errorf("%w: line %d: continuation without a field", ErrSyntax, lineNo)
			}
			if keep == nil || keep[last] {
				p[last] += "\n" + strings.TrimSpace(string(line))
			}
		default:
			name, value, ok := bytes.Cut(line, []byte{':'})
			if !ok || len(name) == 0 {
				return fmt.Errorf("%w: line %d: no field name", ErrSyntax, lineNo)
			}
			last = canonicalField(string(name))
			if keep == nil || keep[last] {
				p[last] = strings.TrimSpace(string(value))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading deb822: %w", err)
	}
	return flush()
}

// canonicalField folds a field name to "Pre-Depends" style.
func canonicalField(s string) string {
	b := []byte(strings.TrimSpace(s))
	up := true
	for i, c := range b {
		switch {
		case up && 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case !up && 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
		up = c == '-'
	}
	return string(b)
}
