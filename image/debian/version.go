package debian

import "strings"

// CompareVersions orders two Debian version strings as dpkg does
// ([epoch:]upstream[-revision], '~' sorting before everything, letters
// before other characters). It returns -1, 0 or 1.
func CompareVersions(a, b string) int {
	ea, ua, ra := splitVersion(a)
	eb, ub, rb := splitVersion(b)
	if c := compareNumeric(ea, eb); c != 0 {
		return c
	}
	if c := compareFragment(ua, ub); c != 0 {
		return c
	}
	return compareFragment(ra, rb)
}

func splitVersion(v string) (epoch, upstream, revision string) {
	if e, rest, ok := strings.Cut(v, ":"); ok && isDigits(e) {
		epoch, v = e, rest
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// compareFragment is dpkg's verrevcmp: alternating non-digit and digit runs.
func compareFragment(a, b string) int {
	for a != "" || b != "" {
		var na, nb string
		na, a = splitRun(a, false)
		nb, b = splitRun(b, false)
		if c := compareLexical(na, nb); c != 0 {
			return c
		}
		na, a = splitRun(a, true)
		nb, b = splitRun(b, true)
		if c := compareNumeric(na, nb); c != 0 {
			return c
		}
	}
	return 0
}

func splitRun(s string, digits bool) (run, rest string) {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') == digits {
		i++
	}
	return s[:i], s[i:]
}

func compareNumeric(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return sign(len(a) - len(b))
	}
	return strings.Compare(a, b)
}

func compareLexical(a, b string) int {
	for i := 0; i < len(a) || i < len(b); i++ {
		if c := sign(charOrder(a, i) - charOrder(b, i)); c != 0 {
			return c
		}
	}
	return 0
}

// charOrder is dpkg's order of one character: '~' before the end of the
// string, the end before letters, letters before everything else.
func charOrder(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	c := s[i]
	switch {
	case c == '~':
		return -1
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		return int(c)
	default:
		return int(c) + 256
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
