package debian

import "testing"

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"1.0", "1.1", -1},
		{"1.10", "1.9", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0", "1.0+b1", -1},
		{"1:0.1", "2.0", 1},
		{"0:1.0", "1.0", 0},
		{"2.36-9", "2.36-10", -1},
		{"2.36-9+deb12u1", "2.36-9", 1},
		{"1.0a", "1.0+", -1},
		{"6.1.176-1", "6.1.76-1", 1},
		{"1.0-1", "1.0", 1},
		{"001.02", "1.2", 0},
		{"1~~", "1~~a", -1},
		{"1~", "1~~", 1},
	} {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}
