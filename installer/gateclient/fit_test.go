package gateclient

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/kilnlab/kiln/pxe/api"
)

// FuzzFitText: whatever a task's error says, what the client sends is
// what the gate accepts as free text.
func FuzzFitText(f *testing.F) {
	for _, s := range []string{"", "plain", "a\tb\nc", "\x1b[2J", "\xff\xfe", strings.Repeat("é", api.MaxText)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := fitText(s)
		if len(got) > api.MaxText || !utf8.ValidString(got) ||
			strings.IndexFunc(got, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0 {
			t.Fatalf("fitText(%q) = %q", s, got)
		}
		if len(s) <= api.MaxText && utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0 && got != s {
			t.Fatalf("fitText changed fitting text %q to %q", s, got)
		}
	})
}
