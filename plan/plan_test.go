package plan

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/profiles"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func homelab(t *testing.T) *Plan {
	t.Helper()
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Compute(p)
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

func TestGoldenTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, homelab(t)); err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/homelab.table", b.Bytes())
}

func TestGoldenJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, homelab(t)); err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/homelab.json", b.Bytes())
	// The JSON is the contract: it decodes back to the same plan.
	var back Plan
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(homelab(t), &back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}
