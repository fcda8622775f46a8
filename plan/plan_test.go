package plan

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/internal/golden"
	"github.com/kilnlab/kiln/profiles"
)

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
	golden.Check(t, "testdata/homelab.table", b.Bytes())
}

func TestGoldenJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, homelab(t)); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/homelab.json", b.Bytes())
	// The JSON is the contract: it decodes back to the same plan.
	var back Plan
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(homelab(t), &back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
}
