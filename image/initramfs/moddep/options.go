package moddep

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
)

// OptionsFile is the file, next to modules.dep, that holds the parameters
// modules are loaded with, as modprobe.d(5)'s "options MODULE PARAM..."
// lines: the syntax an operator already reads. Nothing else of modprobe.d
// is understood, and a module without a line is loaded without parameters.
const OptionsFile = "modules.options"

// ParseOptions reads OptionsFile: each module's parameters, by module name
// (dashes as underscores, as Name gives them), space-separated as
// finit_module(2) takes them. Several lines for one module add up, as in
// modprobe.d.
func ParseOptions(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "options" || len(f) < 3 {
			return nil, fmt.Errorf("%s line %d: want \"options MODULE PARAM...\"", OptionsFile, n)
		}
		name := strings.ReplaceAll(f[1], "-", "_")
		out[name] = strings.TrimSpace(out[name] + " " + strings.Join(f[2:], " "))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", OptionsFile, err)
	}
	return out, nil
}

// FormatOptions writes params as OptionsFile lines, by module name in
// order so that equal params give equal bytes (the initramfs is
// reproducible).
func FormatOptions(w io.Writer, params map[string]string) error {
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := strings.Fields(params[name])
		if name == "" || strings.ContainsFunc(name, unicode.IsSpace) || strings.HasPrefix(name, "#") || len(p) == 0 {
			return fmt.Errorf("module %q with parameters %q: %w", name, params[name], errBadOptions)
		}
		if _, err := fmt.Fprintf(w, "options %s %s\n", name, strings.Join(p, " ")); err != nil {
			return err
		}
	}
	return nil
}

var errBadOptions = errors.New("want one module name and at least one parameter")
