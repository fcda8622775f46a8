package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The stand-in is stdlib only, so it reads YAML itself: the subset that
// Kubernetes manifests and k3s's config.yaml are written in. Block mappings
// and sequences, plain, quoted ('…', "…") and block (| and >) scalars,
// one-line flow collections ([…], {…}), comments, and documents separated
// by "---". Anchors, aliases, tags, complex keys and plain scalars over
// several lines are refused as unsupported rather than misread: a
// manifest the stand-in cannot read fails its check, loudly.
//
// Values come out as map[string]any, []any, string, bool, int64, float64
// or nil, YAML 1.2's core schema.

// errUnsupported marks valid YAML the subset does not read.
var errUnsupported = errors.New("not in the stand-in's YAML subset")

// parseYAML parses every document of data; empty documents are dropped.
func parseYAML(data string) ([]any, error) {
	lines := strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n")
	for i, l := range lines {
		// YAML indents with spaces only (a tab after a block scalar's
		// indentation is content, which the subset gives up).
		lead := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		if strings.Contains(lead, "\t") && strings.TrimSpace(l) != "" {
			return nil, fmt.Errorf("line %d: a tab in indentation", i+1)
		}
	}
	var docs []any
	start := 0
	for i := 0; i <= len(lines); i++ {
		if i < len(lines) && !isDocMarker(lines[i]) {
			continue
		}
		p := &yparser{lines: lines[start:i], first: start + 1}
		v, err := p.document()
		if err != nil {
			return nil, err
		}
		if v != nil {
			docs = append(docs, v)
		}
		start = i + 1
	}
	return docs, nil
}

func isDocMarker(line string) bool {
	t := strings.TrimRight(line, " \t")
	return t == "---" || t == "..." || strings.HasPrefix(t, "--- #")
}

type yparser struct {
	lines []string
	first int // the file's line number of lines[0]
	i     int
}

func (p *yparser) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", p.first+p.i, fmt.Sprintf(format, args...))
}

func (p *yparser) document() (any, error) {
	v, err := p.node(0)
	if err != nil {
		return nil, err
	}
	if p.next() >= 0 {
		return nil, p.errorf("unexpected content (bad indentation?)")
	}
	return v, nil
}

// next skips blank and comment lines and returns the indentation of the
// next line, -1 at the end.
func (p *yparser) next() int {
	for ; p.i < len(p.lines); p.i++ {
		t := strings.TrimSpace(p.lines[p.i])
		if t != "" && t[0] != '#' {
			return len(p.lines[p.i]) - len(strings.TrimLeft(p.lines[p.i], " "))
		}
	}
	return -1
}

// node parses the block node starting at the next line, if it is indented
// at least min; nil (YAML's null) if not.
func (p *yparser) node(min int) (any, error) {
	ind := p.next()
	if ind < min {
		return nil, nil
	}
	text := p.lines[p.i][ind:]
	switch {
	case isSeqItem(text):
		return p.seq(ind)
	case isKey(text):
		return p.mapping(ind)
	}
	v, err := p.inline(text)
	p.i++
	return v, err
}

func isSeqItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

func isKey(text string) bool {
	_, _, ok, _ := splitKey(text)
	return ok
}

func (p *yparser) seq(ind int) ([]any, error) {
	out := []any{}
	for {
		i := p.next()
		// A line less indented, or not an item at this column, ends
		// the sequence; the caller judges it.
		if i < ind || !isSeqItem(p.lines[p.i][ind:]) {
			return out, nil
		}
		text := p.lines[p.i][ind:]
		rest := strings.TrimLeft(text[1:], " ")
		var v any
		var err error
		if rest == "" || rest[0] == '#' {
			p.i++
			v, err = p.node(ind + 1)
		} else {
			// The item's content starts its own node at its column,
			// e.g. a mapping whose next keys line up under its first.
			col := ind + len(text) - len(rest)
			p.lines[p.i] = strings.Repeat(" ", col) + rest
			v, err = p.node(col)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
}

func (p *yparser) mapping(ind int) (map[string]any, error) {
	m := map[string]any{}
	for {
		i := p.next()
		if i < ind {
			return m, nil
		}
		if i > ind {
			return nil, p.errorf("bad indentation (a plain scalar over several lines is %v)", errUnsupported)
		}
		key, rest, ok, err := splitKey(p.lines[p.i][ind:])
		if err != nil {
			return nil, p.errorf("%v", err)
		}
		if !ok {
			return nil, p.errorf("want \"key: value\"")
		}
		if _, dup := m[key]; dup {
			return nil, p.errorf("key %q repeated", key)
		}
		if m[key], err = p.value(ind, rest); err != nil {
			return nil, err
		}
	}
}

// value parses what follows "key:" on the current line, of a mapping at
// ind, and the lines that belong to it.
func (p *yparser) value(ind int, rest string) (any, error) {
	rest = strings.TrimSpace(rest)
	if rest != "" && !strings.ContainsRune("#|>", rune(rest[0])) {
		v, err := p.inline(rest)
		p.i++
		return v, err
	}
	p.i++
	if rest != "" && rest[0] != '#' {
		return p.blockScalar(ind, rest)
	}
	if j := p.next(); j == ind && isSeqItem(p.lines[p.i][ind:]) {
		return p.seq(ind) // a sequence may line up with its key
	}
	return p.node(ind + 1)
}

// blockScalar reads a literal (|) or folded (>) scalar's lines: those
// indented more than its key, and blank ones.
func (p *yparser) blockScalar(ind int, header string) (string, error) {
	h := stripComment(header)
	if !blockHeaderRE.MatchString(h) {
		return "", p.errorf("block scalar header %q is %v", h, errUnsupported)
	}
	var lines []string
	bi := -1 // the block's indentation
	for ; p.i < len(p.lines); p.i++ {
		l := p.lines[p.i]
		if strings.TrimSpace(l) == "" {
			lines = append(lines, "")
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " "))
		if bi < 0 {
			bi = n
		}
		if n <= ind || n < bi {
			break
		}
		lines = append(lines, l[bi:])
	}
	body := strings.TrimRight(strings.Join(lines, "\n"), "\n")
	trailing := len(lines) - len(strings.Split(body, "\n"))
	if h[0] == '>' {
		body = fold(body)
	}
	switch {
	case body == "":
		return "", nil
	case strings.HasSuffix(h, "-"):
		return body, nil
	case strings.HasSuffix(h, "+"):
		return body + strings.Repeat("\n", trailing+1), nil
	}
	return body + "\n", nil
}

// fold joins lines of a folded scalar with spaces; blank lines and more
// indented lines keep their line breaks.
func fold(s string) string {
	lines := strings.Split(s, "\n")
	var b strings.Builder
	for i, l := range lines {
		b.WriteString(l)
		if i == len(lines)-1 {
			break
		}
		next := lines[i+1]
		if l == "" || next == "" || strings.HasPrefix(l, " ") || strings.HasPrefix(next, " ") {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// splitKey splits "key: rest" (or "key:" at the end); ok is false for a
// line that is not a mapping entry.
func splitKey(text string) (key, rest string, ok bool, err error) {
	if text == "" || isSeqItem(text) || strings.ContainsRune("[{#", rune(text[0])) {
		return "", "", false, nil
	}
	if text[0] == '?' && (len(text) == 1 || text[1] == ' ') {
		return "", "", false, fmt.Errorf("complex keys are %w", errUnsupported)
	}
	if text[0] == '"' || text[0] == '\'' {
		end := closingQuote(text)
		if end < 0 || end+1 >= len(text) || text[end+1] != ':' || end+2 < len(text) && text[end+2] != ' ' {
			return "", "", false, nil
		}
		k, err := quoted(text[:end+1])
		return k, text[end+2:], err == nil, err
	}
	for i := 0; i < len(text); i++ {
		if text[i] == ' ' && i+1 < len(text) && text[i+1] == '#' {
			return "", "", false, nil
		}
		if text[i] == ':' && (i+1 == len(text) || text[i+1] == ' ') {
			return strings.TrimSpace(text[:i]), text[i+1:], true, nil
		}
	}
	return "", "", false, nil
}

// inline parses a scalar or a flow collection that fills the rest of a line.
func (p *yparser) inline(s string) (any, error) {
	s = stripComment(s)
	f := &flow{s: s}
	v, err := f.value(false)
	if err == nil && strings.TrimSpace(f.s[f.i:]) != "" {
		err = fmt.Errorf("unexpected %q after a value", strings.TrimSpace(f.s[f.i:]))
	}
	if err != nil {
		return nil, p.errorf("%v", err)
	}
	return v, nil
}

// stripComment drops a " #" comment outside quotes.
func stripComment(s string) string {
	var q byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case q != 0:
			if c == '\\' && q == '"' {
				i++
			} else if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
			return strings.TrimSpace(s[:i])
		}
	}
	return strings.TrimSpace(s)
}

// closingQuote is the index of the quote closing the one s starts with.
func closingQuote(s string) int {
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch {
		case q == '"' && s[i] == '\\':
			i++
		case s[i] == q && q == '\'' && i+1 < len(s) && s[i+1] == '\'':
			i++
		case s[i] == q:
			return i
		}
	}
	return -1
}

// quoted decodes a whole quoted scalar.
func quoted(s string) (string, error) {
	if s[0] == '\'' {
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), nil
	}
	v, err := strconv.Unquote(s)
	if err != nil {
		return "", fmt.Errorf("double-quoted scalar %s: %w", s, err)
	}
	return v, nil
}

// flow reads flow values: [a, b], {k: v}, quoted and plain scalars.
type flow struct {
	s string
	i int
}

func (f *flow) skip() {
	for f.i < len(f.s) && f.s[f.i] == ' ' {
		f.i++
	}
}

// value reads one value; inFlow makes , ] } end a plain scalar.
func (f *flow) value(inFlow bool) (any, error) {
	f.skip()
	if f.i == len(f.s) {
		return nil, nil
	}
	switch c := f.s[f.i]; c {
	case '[':
		return f.list()
	case '{':
		return f.dict()
	case '"', '\'':
		end := closingQuote(f.s[f.i:])
		if end < 0 {
			return nil, errors.New("unterminated quoted scalar")
		}
		v, err := quoted(f.s[f.i : f.i+end+1])
		f.i += end + 1
		return v, err
	case '&', '*', '!':
		return nil, fmt.Errorf("anchors, aliases and tags are %w", errUnsupported)
	case '|', '>', '%', '@', '`', ']', '}', ',':
		return nil, fmt.Errorf("a plain scalar cannot start with %q", c)
	}
	start := f.i
	for ; f.i < len(f.s); f.i++ {
		c := f.s[f.i]
		if inFlow && (c == ',' || c == ']' || c == '}' || c == ':' && (f.i+1 == len(f.s) || f.s[f.i+1] == ' ')) {
			break
		}
	}
	return resolve(strings.TrimSpace(f.s[start:f.i])), nil
}

// items reads a flow collection's entries up to closing, each with item.
func (f *flow) items(closing byte, item func() error) error {
	f.i++ // the opening bracket
	for {
		f.skip()
		if f.i < len(f.s) && f.s[f.i] == closing {
			f.i++
			return nil
		}
		if err := item(); err != nil {
			return err
		}
		if err := f.sep(closing); err != nil {
			return err
		}
	}
}

func (f *flow) list() ([]any, error) {
	out := []any{}
	err := f.items(']', func() error {
		v, err := f.value(true)
		out = append(out, v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (f *flow) dict() (map[string]any, error) {
	m := map[string]any{}
	if err := f.items('}', func() error { return f.entry(m) }); err != nil {
		return nil, err
	}
	return m, nil
}

// entry reads "key: value", or a key alone (whose value is null), into m.
func (f *flow) entry(m map[string]any) error {
	k, err := f.value(true)
	if err != nil {
		return err
	}
	key, ok := k.(string)
	if !ok {
		key = fmt.Sprint(k)
	}
	f.skip()
	var v any
	if f.i < len(f.s) && f.s[f.i] == ':' {
		f.i++
		if v, err = f.value(true); err != nil {
			return err
		}
	}
	if _, dup := m[key]; dup {
		return fmt.Errorf("key %q repeated", key)
	}
	m[key] = v
	return nil
}

// sep consumes a comma, or leaves the closing bracket for the caller.
func (f *flow) sep(closing byte) error {
	f.skip()
	switch {
	case f.i == len(f.s):
		return fmt.Errorf("unterminated flow collection (missing %q; one over several lines is %v)", closing, errUnsupported)
	case f.s[f.i] == ',':
		f.i++
	case f.s[f.i] != closing:
		return fmt.Errorf("want ',' or %q, not %q", closing, f.s[f.i])
	}
	return nil
}

var (
	// blockHeaderRE: | or >, and a chomping indicator; an explicit
	// indentation indicator is not in the subset.
	blockHeaderRE = regexp.MustCompile(`^[|>][+-]?$`)
	intRE         = regexp.MustCompile(`^[-+]?[0-9]+$`)
	floatRE       = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)
)

// resolve types a plain scalar as YAML 1.2's core schema does.
func resolve(s string) any {
	switch s {
	case "", "~", "null", "Null", "NULL":
		return nil
	case "true", "True", "TRUE":
		return true
	case "false", "False", "FALSE":
		return false
	}
	if intRE.MatchString(s) {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	if floatRE.MatchString(s) {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
	}
	return s
}
