package pxe

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/internal/golden"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/httpd"
	"github.com/kilnlab/kiln/pxe/state"
)

func TestFirstBootBrief(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []httpd.PhaseStatus
		want string
	}{
		{"not booted yet", nil, "-"},
		{"all done", []httpd.PhaseStatus{{Name: "storage", Status: "done", Attempts: 1}, {Name: "network", Status: "done", Attempts: 2}},
			"phases 2/2 done"},
		{"one running", []httpd.PhaseStatus{{Name: "storage", Status: "done"}, {Name: "ceph", Status: "running", Task: "mon", Attempts: 1}, {Name: "announce", Status: "pending"}},
			"phases 1/3 done, ceph running"},
		{"running again after a failure", []httpd.PhaseStatus{{Name: "ceph", Status: "running", Attempts: 2, Error: "\nmon: no quorum\nmore"}},
			"phases 0/1 done, ceph running (attempt 2)"},
		{"failed, the first attempt", []httpd.PhaseStatus{{Name: "storage", Status: "done"}, {Name: "network", Status: "failed", Attempts: 1, Error: "no address"}},
			"network failed (attempt 1): no address"},
		{"failed, a long error cut", []httpd.PhaseStatus{{Name: "ceph", Status: "failed", Attempts: 3, Error: strings.Repeat("é", 100) + "\nsecond line"}},
			"ceph failed (attempt 3): " + strings.Repeat("é", maxBrief-1) + "…"},
		{"the first failure wins", []httpd.PhaseStatus{{Name: "a", Status: "failed", Attempts: 2, Error: "x"}, {Name: "b", Status: "failed", Attempts: 1, Error: "y"}},
			"a failed (attempt 2): x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, firstBootBrief(tc.in)); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestServicesBrief(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   *httpd.HealthStatus
		want string
	}{
		{"never reported", nil, "-"},
		{"empty report", &httpd.HealthStatus{At: now.Add(-time.Second)}, "no services (1s ago)"},
		{"in the machine's order", &httpd.HealthStatus{At: now.Add(-150 * time.Second), Services: []httpd.ServiceStatus{
			{Name: "k3s", Status: "ok"}, {Name: "ceph", Status: "warn", Detail: "HEALTH_WARN: OSD_DOWN"}}},
			"k3s=ok ceph=warn (2m30s ago)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, servicesBrief(tc.in, now)); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestCell(t *testing.T) {
	if got, want := cell("a\tb\nc\x1b[31md"), "a b c [31md"; got != want {
		t.Errorf("cell = %q, want %q", got, want)
	}
}

// TestWriteMachinesGolden: `kiln gate machines` shows each machine's
// first boot and services in brief, then the lab's services table, then
// the whole error of a failing phase and the detail of each service not
// ok.
func TestWriteMachinesGolden(t *testing.T) {
	p := testPlan()
	p.Machines = append(p.Machines, plan.Machine{Name: "ceph-3", Role: "storage", Board: "pc", Arch: "amd64", MAC: "52:54:00:00:01:03",
		Address: "10.77.0.13/24", RoleImage: "roles/storage.squashfs"})
	for i := range p.Machines {
		p.Machines[i].FirstBoot = []string{"storage", "network", "ceph", "announce"}
	}
	dir := t.TempDir()
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	now := at
	st, err := state.Open(filepath.Join(dir, "machines"), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	must := func(_ state.Record, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	phases := func(mac string, reports ...state.PhaseReport) {
		t.Helper()
		for _, r := range reports {
			must(st.ReportPhase(mac, "", r))
		}
	}
	install := func(mac string) {
		t.Helper()
		tok, err := st.ArmToken(mac, "")
		if err != nil {
			t.Fatal(err)
		}
		must(st.BeginInstall(mac, "", tok))
		must(st.Finish(mac, "", tok, true, ""))
		must(st.MarkBooted(mac, "", state.Booted{Hostname: "h", Address: "10.77.0.9/24"}))
	}
	// ceph-1: netbooted after its install, every phase done, its services
	// well: k3s (a stand-in) first, then ceph-mon.
	const c1, c2 = "52:54:00:00:01:01", "52:54:00:00:01:02"
	now = at.Add(-10 * time.Minute)
	install(c1)
	now = at.Add(-9 * time.Minute)
	must(st.MarkNetbooted(c1, ""))
	now = at.Add(-5 * time.Minute)
	must(st.ReportHealth(c1, "", state.HealthReport{Services: []state.Service{{Name: "ceph-mon", Status: "starting"}, {Name: "k3s", Status: "ok", Detail: "STAND-IN: k3s\nnode Ready"}}}))
	now = at
	for _, ph := range []string{"storage", "network", "ceph", "announce"} {
		phases(c1, state.PhaseReport{Phase: ph, Status: state.PhaseRunning}, state.PhaseReport{Phase: ph, Status: state.PhaseDone})
	}
	must(st.ReportHealth(c1, "", state.HealthReport{Services: []state.Service{{Name: "ceph-mon", Status: "ok", Detail: "HEALTH_OK"}, {Name: "k3s", Status: "ok", Detail: "STAND-IN: k3s\nnode Ready"}}}))
	// ceph-2: its ceph phase failed three times, the error a command's
	// output; a service warns, another starts, a third is ok (the gate
	// saw no netboot to count from).
	install(c2)
	phases(c2, state.PhaseReport{Phase: "storage", Status: state.PhaseRunning}, state.PhaseReport{Phase: "storage", Status: state.PhaseDone},
		state.PhaseReport{Phase: "network", Status: state.PhaseRunning}, state.PhaseReport{Phase: "network", Status: state.PhaseDone})
	for range 3 {
		phases(c2, state.PhaseReport{Phase: "ceph", Status: state.PhaseRunning},
			state.PhaseReport{Phase: "ceph", Status: state.PhaseFailed, Task: "mon", Error: "ceph-mon --mkfs: exit status 1\n\tmon.ceph-2: no quorum\n"})
	}
	must(st.ReportHealth(c2, "", state.HealthReport{Services: []state.Service{
		{Name: "ceph-mon", Status: "warn", Detail: "HEALTH_WARN: MON_CLOCK_SKEW"},
		{Name: "k3s", Status: "starting"},
		{Name: "chrony", Status: "ok"},
	}}))

	// ceph-3: its network phase runs again after a failure; no health
	// report yet.
	const c3 = "52:54:00:00:01:03"
	install(c3)
	phases(c3, state.PhaseReport{Phase: "storage", Status: state.PhaseRunning}, state.PhaseReport{Phase: "storage", Status: state.PhaseDone},
		state.PhaseReport{Phase: "network", Status: state.PhaseRunning},
		state.PhaseReport{Phase: "network", Status: state.PhaseFailed, Task: "wait-address", Error: "address 10.77.0.13/24 never appeared"},
		state.PhaseReport{Phase: "network", Status: state.PhaseRunning},
		state.PhaseReport{Phase: "network", Status: state.PhaseRunning, Task: "wait-address", Message: "waiting"})

	rows, err := Machines(p, dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeMachines(&buf, rows, at.Add(90*time.Second), time.UTC); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "machines.txt"), buf.Bytes())
}
