package debian

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePackages(t *testing.T) {
	pkgs := testPackages(t)
	if len(pkgs) != 17 {
		t.Fatalf("got %d packages, want 17", len(pkgs))
	}
	want := Package{
		Name: "tar", Version: "1.34+dfsg-1.2", Architecture: "amd64",
		Filename: "pool/main/t/tar/tar_1.34+dfsg-1.2_amd64.deb", Size: 30,
		SHA256: strings.Repeat("4", 64), Priority: "optional", Essential: true,
		PreDepends: []Alternatives{{{Name: "libc6", ArchQual: "any", Op: ">=", Version: "2.34"}}},
	}
	if d := cmp.Diff(want, pkgs[3]); d != "" {
		t.Errorf("tar -want +got:\n%s", d)
	}
}

func TestParsePackagesErrors(t *testing.T) {
	full := "Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/a.deb\nSize: 1\nSHA256: " + strings.Repeat("a", 64) + "\n"
	for name, in := range map[string]string{
		"no sha256":        "Package: a\nVersion: 1\nFilename: f\nSize: 1\n",
		"bad size":         strings.Replace(full, "Size: 1", "Size: -1", 1),
		"short sha256":     strings.Replace(full, strings.Repeat("a", 64), "abc", 1),
		"orphan continue":  " leading continuation\n" + full,
		"no colon":         full + "garbage\n",
		"bad depends":      full + "Depends: a (>= \n",
		"bad pre-depends":  full + "Pre-Depends: (x)\n",
		"bad provides":     full + "Provides: a [amd64]\n",
		"version missing":  strings.Replace(full, "Version: 1\n", "", 1),
		"filename missing": strings.Replace(full, "Filename: pool/a.deb\n", "", 1),
	} {
		if _, err := ParsePackages(strings.NewReader(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("%s: got %v, want ErrSyntax", name, err)
		}
	}
	if _, err := ParsePackages(strings.NewReader("# comment\n\n" + full + "\n\n")); err != nil {
		t.Errorf("comments and blank lines: %v", err)
	}
}

func TestReadParagraphsFieldCase(t *testing.T) {
	var got []Paragraph
	err := ReadParagraphs(strings.NewReader("pre-depends: x\nSHA256:\n a 1 f\n b 2 g\n"), func(p Paragraph) error {
		got = append(got, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Paragraph{{"Pre-Depends": "x", "Sha256": "\na 1 f\nb 2 g"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("-want +got:\n%s", d)
	}
}

// FuzzParsePackages: Packages indexes come from the network (after their
// hash is checked, but the parser must not trust even that).
func FuzzParsePackages(f *testing.F) {
	seed, err := os.ReadFile("testdata/Packages")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("Package: a\n b\n\n\n#c\nX:\n"))
	f.Add([]byte("Depends: a:any (>= 1) | b (<< 2), c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := ParsePackages(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, p := range pkgs {
			if p.Name == "" || p.Size < 0 || !isHexSHA256(p.SHA256) {
				t.Fatalf("accepted invalid package %+v", p)
			}
		}
		ix := NewIndex("amd64", pkgs)
		var names []string
		for _, p := range pkgs {
			names = append(names, p.Name)
		}
		_, _ = ix.Closure(names)
	})
}

// FuzzParseRelease: the signed Release text is network input too.
func FuzzParseRelease(f *testing.F) {
	f.Add([]byte("Suite: bookworm\nSHA256:\n " + strings.Repeat("a", 64) + " 12 main/binary-amd64/Packages.xz\n"))
	f.Add([]byte("SHA256:\n x y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRelease(data)
		if err != nil {
			return
		}
		for path, h := range r.SHA256 {
			if path == "" || !isHexSHA256(h.SHA256) {
				t.Fatalf("accepted bad hash line %q %+v", path, h)
			}
		}
	})
}
