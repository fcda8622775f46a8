package api_test

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/api"
)

// TestWire pins the JSON the gate and its clients exchange: a change here
// breaks installers and role OSes already in the field.
func TestWire(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"progress", api.Progress{Phase: "write", Message: "root", Done: 5, Total: 10},
			`{"phase":"write","message":"root","done":5,"total":10}`},
		{"progress minimal", api.Progress{Phase: "check"}, `{"phase":"check"}`},
		{"result ok", api.Result{OK: true}, `{"ok":true}`},
		{"result failed", api.Result{Error: "boom"}, `{"ok":false,"error":"boom"}`},
		{"booted", api.Booted{Hostname: "ceph-1", Address: "10.0.0.11/24"},
			`{"hostname":"ceph-1","address":"10.0.0.11/24"}`},
		{"phase start", api.Phase{Phase: "storage", Status: api.PhaseRunning},
			`{"phase":"storage","status":"running"}`},
		{"phase task", api.Phase{Phase: "storage", Status: api.PhaseRunning, Task: "grow-state", Message: "task 1 of 1"},
			`{"phase":"storage","status":"running","task":"grow-state","message":"task 1 of 1"}`},
		{"phase done", api.Phase{Phase: "storage", Status: api.PhaseDone}, `{"phase":"storage","status":"done"}`},
		{"phase failed", api.Phase{Phase: "network", Status: api.PhaseFailed, Task: "wait-address", Error: "never appeared"},
			`{"phase":"network","status":"failed","task":"wait-address","error":"never appeared"}`},
		{"health", api.Health{Services: []api.Service{
			{Name: "systemd-networkd", Status: api.HealthOK},
			{Name: "systemd-timesyncd", Status: api.HealthWarn, Detail: "not synchronised"},
			{Name: "ceph-osd@0", Status: api.HealthFailed, Detail: "exited 1"},
			{Name: "k3s", Status: api.HealthStarting},
		}}, `{"services":[{"name":"systemd-networkd","status":"ok"},` +
			`{"name":"systemd-timesyncd","status":"warn","detail":"not synchronised"},` +
			`{"name":"ceph-osd@0","status":"failed","detail":"exited 1"},{"name":"k3s","status":"starting"}]}`},
		{"health of nothing", api.Health{Services: []api.Service{}}, `{"services":[]}`},
		{"routes", []string{api.PathPhase, api.PathHealth}, `["/api/v1/phase/","/api/v1/health/"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, string(b)); d != "" {
				t.Errorf("JSON (-want +got):\n%s", d)
			}
		})
	}
}

func TestInstallManifestFiles(t *testing.T) {
	m := api.InstallManifest{
		Machine: plan.Machine{Name: "ceph-1"},
		Files:   map[string]bundle.File{api.FileGPTMBR: {Path: "bios/gptmbr.bin", Size: 440, SHA256: "ab"}},
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Machine map[string]any            `json:"machine"`
		Files   map[string]map[string]any `json:"files"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]any{"gptmbr": {"path": "bios/gptmbr.bin", "size": 440.0, "sha256": "ab"}}
	if d := cmp.Diff(want, raw.Files); d != "" {
		t.Errorf("files (-want +got):\n%s", d)
	}
	if raw.Machine["name"] != "ceph-1" {
		t.Errorf("machine = %v", raw.Machine)
	}
}
