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

// TestGoldenBonded pins the plan of a lab with bonds, VLANs, MTUs and a
// cluster network, whose links the table lists per machine; its JSON
// decodes back to the same plan.
func TestGoldenBonded(t *testing.T) {
	p, err := profiles.Load("../profiles/testdata/good-bonded.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Compute(p)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, pl); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/bonded.table", b.Bytes())
	b.Reset()
	if err := WriteJSON(&b, pl); err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pl, &back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	if m, _ := back.Machine("ceph-2"); m.ClusterAddress != "10.20.0.12/24" || len(m.Links) != 4 || back.Network.Cluster != "10.20.0.0/24" {
		t.Errorf("ceph-2: cluster address %q, %d links, lab cluster %q; want 10.20.0.12/24, 4, 10.20.0.0/24",
			m.ClusterAddress, len(m.Links), back.Network.Cluster)
	}
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
