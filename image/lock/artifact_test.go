package lock

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The embedded lock pins the upstream artifacts without sha256: they
// cannot be fetched from here, and each lab's record holds them.
func TestDefaultArtifacts(t *testing.T) {
	f, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	arches := []string{"amd64", "arm64"}
	want := map[string]*Artifact{
		"consul": {Name: "consul", Version: "1.22.6", Source: "hashicorp", Base: "https://releases.hashicorp.com", Arches: arches},
		"vault":  {Name: "vault", Version: "1.21.4", Source: "hashicorp", Base: "https://releases.hashicorp.com", Arches: arches},
		"k3s":    {Name: "k3s", Version: "v1.33.6+k3s1", Source: "k3s", Base: "https://github.com/k3s-io/k3s/releases/download", Arches: arches},
	}
	if d := cmp.Diff(want, f.Artifacts); d != "" {
		t.Errorf("artifacts -want +got:\n%s", d)
	}
}

func TestArtifactRoundTrip(t *testing.T) {
	sha := strings.Repeat("0123456789abcdef", 4)
	f := &File{Format: Format, Mirror: DefaultMirror, Suite: DefaultSuite, Sets: map[string]*Set{},
		Artifacts: map[string]*Artifact{"k3s": {Name: "k3s", Version: "v1.33.6+k3s1", Source: "k3s", Base: "https://example.invalid",
			Arches: []string{"arm64", "amd64"}, SHA256: map[string]map[string]string{"amd64": {"binary": sha, "images": sha}}}}}
	text, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(f, back); d != "" {
		t.Errorf("round trip -want +got:\n%s", d)
	}
	if again, _ := back.Marshal(); string(again) != string(text) {
		t.Errorf("Marshal(Parse(text)) differs:\n%s", cmp.Diff(string(text), string(again)))
	}
	if sum, ok := back.Artifacts["k3s"].Known("amd64", "images"); !ok || sum != sha {
		t.Errorf("Known = %q, %v", sum, ok)
	}
	if _, ok := back.Artifacts["k3s"].Known("arm64", "binary"); ok {
		t.Error("Known for an arch without sha256")
	}
}

func TestArtifactRefused(t *testing.T) {
	const head = `{"format":1,"mirror":"http://deb.debian.org/debian","suite":"bookworm","components":[],"release":{"version":"","date":""},"sets":{},"artifacts":`
	good := `{"name":"consul","version":"1.22.6","source":"hashicorp","base":"https://releases.hashicorp.com","arches":["amd64"]`
	for name, artifacts := range map[string]string{
		"unknown key":         `{"consul":` + good + `,"checksum":"x"}}`,
		"named otherwise":     `{"vault":` + good + `}}`,
		"no version":          `{"consul":` + strings.Replace(good, `"1.22.6"`, `""`, 1) + `}}`,
		"sha256 of no arch":   `{"consul":` + good + `,"sha256":{"arm64":{"binary":"` + strings.Repeat("a", 64) + `"}}}}`,
		"sha256 not a sha256": `{"consul":` + good + `,"sha256":{"amd64":{"binary":"abc"}}}}`,
	} {
		if _, err := Parse([]byte(head + artifacts + "}")); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Parse([]byte(head + `{"consul":` + good + `}}}`)); err != nil {
		t.Errorf("good artifact refused: %v", err)
	}
}
