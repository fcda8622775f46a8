package debian

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func testIndex(t *testing.T, arch string) *Index {
	t.Helper()
	return NewIndex(arch, testPackages(t))
}

// testPackages parses testdata/Packages, the synthetic index.
func testPackages(t *testing.T) []Package {
	t.Helper()
	f, err := os.Open("testdata/Packages")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pkgs, err := ParsePackages(f)
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func names(pkgs []Package) []string {
	var out []string
	for _, p := range pkgs {
		out = append(out, p.Name)
	}
	return out
}

func TestRequired(t *testing.T) {
	ix := testIndex(t, "amd64")
	// arm-only is required but for arm64; tar is Essential but optional.
	want := []string{"base-files", "dpkg", "libelf-old", "mount", "tar", "tzdata"}
	if d := cmp.Diff(want, ix.Required()); d != "" {
		t.Errorf("Required -want +got:\n%s", d)
	}
}

func TestClosure(t *testing.T) {
	ix := testIndex(t, "amd64")
	for _, tc := range []struct {
		name  string
		roots []string
		want  []string
	}{
		{"leaf", []string{"libc6"}, []string{"libc6"}},
		// Pre-Depends with :any; a versioned alternative that cannot be
		// met (>= 2.99) falls through to the next.
		{"pre-depends", []string{"dpkg", "mount"}, []string{"dpkg", "libc6", "mount", "tar"}},
		// time-daemon is virtual: chrony (optional) and ntpsec
		// (standard) provide it, the higher priority wins;
		// dbus-system-bus: dbus outranks dbus-broker.
		{"virtual", []string{"systemd"}, []string{"dbus", "libc6", "mount", "ntpsec", "systemd"}},
		// A provider already chosen satisfies the group.
		{"chosen provider", []string{"chrony", "dbus-broker", "systemd"}, []string{"chrony", "dbus-broker", "libc6", "mount", "systemd"}},
		// A root can be virtual.
		{"virtual root", []string{"time-daemon"}, []string{"ntpsec"}},
		// Versioned Provides: only libelf1 provides libelf-virtual = 0.188.
		{"versioned provides", []string{"libbpf1"}, []string{"libbpf1", "libc6", "libelf1"}},
		// Required plus a root, as lock's closure mode asks.
		{"required", append(ix.Required(), "systemd"), []string{
			"base-files", "dbus", "dpkg", "libc6", "libelf-old", "mount", "ntpsec", "systemd", "tar", "tzdata"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ix.Closure(tc.roots)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, names(got)); d != "" {
				t.Errorf("-want +got:\n%s", d)
			}
			assertComplete(t, ix, got)
		})
	}
}

func TestClosureErrors(t *testing.T) {
	ix := testIndex(t, "amd64")
	for _, tc := range []struct {
		roots []string
		want  error
	}{
		{[]string{"nope"}, ErrNoPackage},
		{[]string{"arm-only"}, ErrNoPackage},
		{[]string{"broken"}, ErrUnsatisfiable},
		// iproute2-doc:i386 cannot come from an amd64 index.
		{[]string{"iproute2"}, ErrUnsatisfiable},
	} {
		if _, err := ix.Closure(tc.roots); !errors.Is(err, tc.want) {
			t.Errorf("Closure(%v) = %v, want %v", tc.roots, err, tc.want)
		}
	}
}

// assertComplete checks the property apt relies on: every dependency
// group of every member has a member in the set.
func assertComplete(t *testing.T, ix *Index, set []Package) {
	t.Helper()
	in := map[int]bool{}
	for _, p := range set {
		for _, i := range ix.byName[p.Name] {
			if ix.pkgs[i].Version == p.Version {
				in[i] = true
			}
		}
	}
	for _, p := range set {
		for _, group := range append(append([]Alternatives{}, p.PreDepends...), p.Depends...) {
			ok := false
			for _, rel := range group {
				ok = ok || ix.satisfiedBy(rel, in)
			}
			if !ok {
				t.Errorf("%s: %v not satisfied in the set", p.Name, group)
			}
		}
	}
}
