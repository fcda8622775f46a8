package httpd

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/net/html"

	"github.com/kilnlab/kiln/internal/golden"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/state"
)

// hostile is what a LAN attacker (or a confused installer) could put in
// an error report, a progress message or a boot report.
const hostile = `</td></tr><script>alert("kiln")</script><img src=x onerror=alert(1)> & "quotes" 'too'`

const (
	macC3  = "52:54:00:00:01:03"
	macCo1 = "52:54:00:00:02:01"
)

// cephDetail is ceph-1's health of Ceph, whose first line is longer than
// the services table shows; standInDetail a stand-in k3s's.
const (
	cephDetail = "HEALTH_OK: monitors 3/3 in quorum (ceph-1, ceph-2, ceph-3), manager ceph-1 active, OSDs 6 up 6 in of 6, " +
		"placement groups 129 active+clean\ndata: 3 self-test objects read back"
	standInDetail = "STAND-IN: k3s version v0.0.0-kiln-standin: node compute-1 Ready"
)

// statusPlan is testPlan with a machine in every state.
func statusPlan() *plan.Plan {
	p := testPlan()
	p.Machines = append(p.Machines,
		plan.Machine{Name: "ceph-3", Role: "storage", Board: "pc", Arch: "amd64", Firmware: "uefi", MAC: macC3,
			Address: "192.168.1.13/24", Hostname: "ceph-3", RoleImage: "roles/storage.squashfs"},
		plan.Machine{Name: "compute-1", Role: "compute", Board: "pc", Arch: "amd64", Firmware: "bios", MAC: macCo1,
			Address: "192.168.1.21/24", Hostname: "compute-1", RoleImage: "roles/compute.squashfs"},
	)
	for i := range p.Machines {
		if p.Machines[i].RoleImage != "" {
			p.Machines[i].FirstBoot = []string{"storage", "network", "announce"}
		}
	}
	return p
}

// statusFixture serves statusPlan with:
// gate-1 never netbooted; ceph-1 installed, netbooted after its install
// and booted, its network phase retried once, its announce phase running,
// its services reported twice (one healthy since the first, one since the
// second with a long detail, one warning, one starting); ceph-2 in install with an outstanding token; ceph-3 installing, half way
// through its root, its secrets taken by a LAN host for its first install
// and by itself for its second; compute-1 netbooted to install, failed with
// a hostile error, and (as no real machine would) booted, its network
// phase failed twice with a hostile error, a hostile service and a
// stand-in k3s. Five requests are refused, two
// of them for ceph-1. It returns the install tokens, live and used.
func statusFixture(t *testing.T) (*fixture, []string) {
	t.Helper()
	f := newFixtureWith(t, func(c *Config) {
		c.Plan = statusPlan()
		c.ProcRoot = filepath.Join("testdata", "proc")
		c.StateFS = func(string) (uint64, uint64, error) { return 96 << 20, 240 << 20, nil }
	})
	st := f.states
	must := func(_ state.Record, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	arm := func(mac, name string) string {
		t.Helper()
		tok, err := st.ArmToken(mac, name)
		if err != nil {
			t.Fatal(err)
		}
		must(st.BeginInstall(mac, name, tok))
		return tok
	}

	tok := arm(macC1, "ceph-1")
	tokC1 := tok
	f.clock.add(20 * time.Second)
	must(st.HandOutSecrets(macC1, "ceph-1", tok, "192.168.1.111:50112"))
	f.clock.add(40 * time.Second)
	must(st.ReportProgress(macC1, "ceph-1", tok, state.Progress{Phase: "done", Message: "installed"}))
	must(st.Finish(macC1, "ceph-1", tok, true, ""))
	phases := func(mac, name string, reports ...state.PhaseReport) {
		t.Helper()
		for _, p := range reports {
			must(st.ReportPhase(mac, name, p))
		}
	}
	netboot := func(mac, name string) {
		t.Helper()
		if code, body := f.do(t, "GET", "/ipxe/"+mac, ""); code != 200 || !strings.HasPrefix(body, "#!ipxe") {
			t.Fatalf("%s's netboot = %d %q", name, code, body)
		}
	}
	f.clock.add(10 * time.Second)
	netboot(macC1, "ceph-1") // it reboots after its install
	f.clock.add(20 * time.Second)
	phases(macC1, "ceph-1",
		state.PhaseReport{Phase: "storage", Status: state.PhaseRunning},
		state.PhaseReport{Phase: "storage", Status: state.PhaseRunning, Task: "grow-state", Message: "task 1 of 1"},
		state.PhaseReport{Phase: "storage", Status: state.PhaseDone})
	f.clock.add(30 * time.Second)
	phases(macC1, "ceph-1",
		state.PhaseReport{Phase: "network", Status: state.PhaseRunning},
		state.PhaseReport{Phase: "network", Status: state.PhaseFailed, Task: "wait-address",
			Error: "address 192.168.1.11/24 never appeared: context deadline exceeded"})
	must(st.ReportHealth(macC1, "ceph-1", state.HealthReport{Services: []state.Service{
		{Name: "systemd-networkd", Status: "ok"},
		{Name: "systemd-timesyncd", Status: "starting"},
		{Name: "ceph-mon", Status: "starting", Detail: "waiting for quorum"},
		{Name: "ceph", Status: "starting"},
	}}))
	f.clock.add(30 * time.Second)
	phases(macC1, "ceph-1",
		state.PhaseReport{Phase: "network", Status: state.PhaseRunning},
		state.PhaseReport{Phase: "network", Status: state.PhaseDone})
	f.clock.add(30 * time.Second)
	phases(macC1, "ceph-1",
		state.PhaseReport{Phase: "announce", Status: state.PhaseRunning},
		state.PhaseReport{Phase: "announce", Status: state.PhaseRunning, Task: "gate", Message: "task 2 of 2"})
	must(st.MarkBooted(macC1, "ceph-1", state.Booted{Hostname: "ceph-1", Address: "192.168.1.11/24"}))
	must(st.ReportHealth(macC1, "ceph-1", state.HealthReport{Services: []state.Service{
		{Name: "systemd-networkd", Status: "ok"},
		{Name: "systemd-timesyncd", Status: "warn", Detail: "clock not synchronised"},
		{Name: "ceph-mon", Status: "starting", Detail: "waiting for quorum"},
		{Name: "ceph", Status: "ok", Detail: cephDetail},
	}}))

	netboot(macCo1, "compute-1")
	tok = arm(macCo1, "compute-1")
	f.clock.add(30 * time.Second)
	must(st.ReportProgress(macCo1, "compute-1", tok, state.Progress{Phase: "check", Message: hostile}))
	must(st.Finish(macCo1, "compute-1", tok, false, hostile))
	must(st.MarkBooted(macCo1, "compute-1", state.Booted{Hostname: hostile, Address: "192.168.1.21/24"}))
	phases(macCo1, "compute-1",
		state.PhaseReport{Phase: "storage", Status: state.PhaseRunning},
		state.PhaseReport{Phase: "storage", Status: state.PhaseDone},
		state.PhaseReport{Phase: "network", Status: state.PhaseRunning},
		state.PhaseReport{Phase: "network", Status: state.PhaseFailed, Task: "wait-address", Error: "first try"},
		state.PhaseReport{Phase: "network", Status: state.PhaseRunning},
		state.PhaseReport{Phase: "network", Status: state.PhaseFailed, Task: "wait-address", Error: hostile})
	must(st.ReportHealth(macCo1, "compute-1", state.HealthReport{Services: []state.Service{
		{Name: hostile, Status: "failed", Detail: hostile},
		{Name: "k3s", Status: "ok", Detail: standInDetail},
	}}))

	// ceph-3: a LAN host took its first install's secrets (the machine
	// netbooted again, and its second install took them too).
	must(st.HandOutSecrets(macC3, "ceph-3", arm(macC3, "ceph-3"), "192.168.1.66:41000"))
	f.clock.add(10 * time.Second)
	tokC3 := arm(macC3, "ceph-3")
	must(st.HandOutSecrets(macC3, "ceph-3", tokC3, "192.168.1.113:41000"))
	f.clock.add(50 * time.Second)
	must(st.ReportProgress(macC3, "ceph-3", tokC3, state.Progress{Phase: "write", Message: "root", Done: 512 << 20, Total: 1024 << 20}))

	tokC2, err := st.ArmToken("52:54:00:00:01:02", "ceph-2")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.add(5 * time.Second)

	// Refused: ceph-2's live token on ceph-3's MAC (a LAN attacker
	// racing it), and a progress report from a MAC not in the plan.
	if code, _ := f.do(t, "GET", "/api/v1/install/"+macC3+"?token="+tokC2, ""); code != 403 {
		t.Fatalf("stolen token = %d, want 403", code)
	}
	if code, _ := f.do(t, "POST", "/api/v1/progress/"+macLost+"?token="+tokC3, `{"phase":"x"}`); code != 403 {
		t.Fatalf("unknown MAC = %d, want 403", code)
	}
	if code, _ := f.do(t, "POST", "/api/v1/result/%3Cscript%3Ealert(1)%3C%2Fscript%3E", `{"ok":true}`); code != 403 {
		t.Fatalf("hostile MAC = %d, want 403", code)
	}
	// Refused for ceph-1: its secrets again for the install that is over,
	// and a report on the plain port, without its certificate.
	if code, _ := f.do(t, "POST", "/api/v1/secrets/"+macC1+"?token="+tokC1, `{}`); code != 403 {
		t.Fatalf("secrets after the install = %d, want 403", code)
	}
	if code, _ := f.do(t, "POST", "/api/v1/booted/"+macC1, `{"hostname":"ceph-1"}`); code != 403 {
		t.Fatalf("plain-port report = %d, want 403", code)
	}
	return f, []string{tokC1, tokC2, tokC3}
}

func TestStatusPageGolden(t *testing.T) {
	f, _ := statusFixture(t)
	code, body := f.do(t, "GET", "/", "")
	if code != 200 {
		t.Fatalf("GET / = %d %s", code, body)
	}
	golden.Check(t, filepath.Join("testdata", "status.html"), []byte(body))
	code, body = f.do(t, "GET", "/status.json", "")
	if code != 200 {
		t.Fatalf("GET /status.json = %d %s", code, body)
	}
	golden.Check(t, filepath.Join("testdata", "status.json"), []byte(body))
}

// wantRows is what statusFixture must show, machine by machine: a
// row's fields, and all of its first-boot phases and services.
var wantRows = []machineRow{
	{Name: "gate-1", Fields: map[string]string{"state": "not netbooted: the gate itself", "mac": macGate, "role": "gate", "firmware": "-"}, Items: []item{}},
	{Name: "ceph-1", Fields: map[string]string{"state": "installed", "role": "storage", "progress": "done installed", "percent": "", "error": "",
		"booted": "192.168.1.11/24 2026-11-01 12:03:00Z (1m35s ago)", "firmware": "uefi",
		"power-on": "netbooted 2026-11-01 12:01:10Z (3m25s ago)", "health-at": "reported 2026-11-01 12:03:00Z (1m35s ago)"},
		Items: []item{
			{"secrets 0", map[string]string{"secrets-to": "192.168.1.111", "secrets-at": "2026-11-01 12:00:20Z (4m15s ago)"}},
			{"phase storage", map[string]string{"phase": "storage", "phase-status": "done", "phase-at": "3m05s ago"}},
			{"phase network", map[string]string{"phase": "network", "phase-status": "done (attempt 2)", "phase-at": "2m05s ago"}},
			{"phase announce", map[string]string{"phase": "announce", "phase-status": "running", "phase-detail": "gate: task 2 of 2", "phase-at": "1m35s ago"}},
			{"service systemd-networkd", map[string]string{"service": "systemd-networkd", "service-status": "ok"}},
			{"service systemd-timesyncd", map[string]string{"service": "systemd-timesyncd", "service-status": "warn", "service-detail": "clock not synchronised"}},
			{"service ceph-mon", map[string]string{"service": "ceph-mon", "service-status": "starting", "service-detail": "waiting for quorum"}},
			{"service ceph", map[string]string{"service": "ceph", "service-status": "ok", "service-detail": strings.Join(strings.Fields(cephDetail), " ")}},
			{"refusal 0", map[string]string{"refusal-what": "first-boot report", "refusal-peer": "127.0.0.1",
				"refusal-why": "report without the machine's identity (reports go to the gate's TLS port)", "refusal-at": "0s ago"}},
			{"refusal 1", map[string]string{"refusal-what": "secrets hand-out", "refusal-peer": "127.0.0.1",
				"refusal-why": "wrong or consumed install token", "refusal-at": "0s ago"}},
		}},
	{Name: "ceph-2", Fields: map[string]string{"state": "install", "progress": "", "error": "", "booted": "", "power-on": "", "firmware": "-", "health-at": ""}, Items: []item{}},
	{Name: "ceph-3", Fields: map[string]string{"state": "installing (attempt 2 of 5)", "progress": "write root", "percent": "50%",
		"progress-at": "2026-11-01 12:04:30Z (5s ago)", "error": "", "power-on": ""},
		Items: []item{
			// Newest first: the LAN host's hand-out is the earlier one.
			{"secrets 0", map[string]string{"secrets-to": "192.168.1.113", "secrets-at": "2026-11-01 12:03:40Z (55s ago)"}},
			{"secrets 1", map[string]string{"secrets-to": "192.168.1.66", "secrets-at": "2026-11-01 12:03:30Z (1m05s ago)"}},
			{"refusal 0", map[string]string{"refusal-what": "install manifest", "refusal-peer": "127.0.0.1",
				"refusal-why": "wrong or consumed install token", "refusal-at": "0s ago"}},
		}},
	{Name: "compute-1", Fields: map[string]string{"state": "failed", "progress": "check " + hostile, "error": hostile,
		"booted": hostile + " 192.168.1.21/24 2026-11-01 12:03:30Z (1m05s ago)", "firmware": "bios",
		"power-on": "netbooted 2026-11-01 12:03:00Z (1m35s ago)", "health-at": "reported 2026-11-01 12:03:30Z (1m05s ago)"},
		Items: []item{
			{"phase storage", map[string]string{"phase": "storage", "phase-status": "done", "phase-at": "1m05s ago"}},
			{"phase network", map[string]string{"phase": "network", "phase-status": "failed (attempt 2)", "phase-detail": "wait-address",
				"phase-error": hostile, "phase-at": "1m05s ago"}},
			{"phase announce", map[string]string{"phase": "announce", "phase-status": "pending"}},
			// The state keeps a name's first state.MaxName bytes.
			{"service " + hostile[:state.MaxName], map[string]string{"service": hostile[:state.MaxName], "service-status": "failed", "service-detail": hostile}},
			{"service k3s", map[string]string{"service": "k3s", "service-status": "ok", "service-detail": standInDetail}},
		}},
}

// wantServices is the Services table statusFixture must show, row by row:
// the verdict of each service, its time from the machine's netboot to its
// first ok report, since when it has its status and its detail's first
// line, clipped.
var wantServices = []map[string]string{
	{"svc-machine": "ceph-1", "svc-name": "systemd-networkd", "verdict": "VERIFIED", "to-healthy": "50s", "svc-since": "2m35s ago"},
	{"svc-machine": "ceph-1", "svc-name": "systemd-timesyncd", "verdict": "FAILED", "to-healthy": "-", "svc-since": "1m35s ago",
		"svc-detail": "clock not synchronised"},
	{"svc-machine": "ceph-1", "svc-name": "ceph-mon", "verdict": "STARTING", "to-healthy": "-", "svc-since": "2m35s ago",
		"svc-detail": "waiting for quorum"},
	{"svc-machine": "ceph-1", "svc-name": "ceph", "verdict": "VERIFIED", "to-healthy": "1m50s", "svc-since": "1m35s ago",
		"svc-detail": cephDetail[:maxDetailLine-1] + "…"},
	{"svc-machine": "compute-1", "svc-name": hostile[:state.MaxName], "verdict": "FAILED", "to-healthy": "-", "svc-since": "1m05s ago",
		"svc-detail": hostile},
	{"svc-machine": "compute-1", "svc-name": "k3s", "verdict": "STAND-IN", "to-healthy": "30s", "svc-since": "1m05s ago",
		"svc-detail": standInDetail},
}

func TestStatusPageDOM(t *testing.T) {
	f, _ := statusFixture(t)
	_, body := f.do(t, "GET", "/", "")
	checkRows(t, body, wantRows)
	checkServices(t, body, wantServices)
	if strings.Contains(body, "<script") || strings.Contains(body, "<img") {
		t.Error("a hostile string reached the page unescaped")
	}
}

func TestStatusJSON(t *testing.T) {
	f, _ := statusFixture(t)
	_, body := f.do(t, "GET", "/status.json", "")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	var names, states []string
	for _, m := range st.Machines {
		names, states = append(names, m.Name), append(states, m.State)
	}
	if diff := cmp.Diff([]string{"gate-1", "ceph-1", "ceph-2", "ceph-3", "compute-1"}, names); diff != "" {
		t.Errorf("machines not in plan order (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff([]string{"", "installed", "install", "installing", "failed"}, states); diff != "" {
		t.Errorf("states (-want +got)\n%s", diff)
	}
	if p := st.Machines[3].Progress; p == nil || p.Percent != 50 || p.At.IsZero() {
		t.Errorf("ceph-3 progress %+v", p)
	}
	if st.Machines[4].Error != hostile {
		t.Errorf("compute-1 error %q", st.Machines[4].Error)
	}
	// First boot: the plan's phases in plan order, pending until reported;
	// nothing for a machine that never reported one.
	type phase struct{ Name, Status, Error string }
	var got [][]phase
	for _, m := range st.Machines {
		var ps []phase
		for _, p := range m.Phases {
			ps = append(ps, phase{p.Name, p.Status, p.Error})
		}
		got = append(got, ps)
	}
	if diff := cmp.Diff([][]phase{nil,
		{{"storage", "done", ""}, {"network", "done", ""}, {"announce", "running", ""}},
		nil, nil,
		{{"storage", "done", ""}, {"network", "failed", hostile}, {"announce", "pending", ""}},
	}, got); diff != "" {
		t.Errorf("phases (-want +got)\n%s", diff)
	}
	if h := st.Machines[1].Health; h == nil || len(h.Services) != 4 || h.At.IsZero() ||
		h.Services[1] != (ServiceStatus{Name: "systemd-timesyncd", Status: "warn", Detail: "clock not synchronised", Since: h.At}) {
		t.Errorf("ceph-1 health %+v", h)
	}
	// The services table: each machine's services with what the gate
	// makes of them, counted from the machine's last netboot.
	at := func(hms string) time.Time {
		t.Helper()
		tm, err := time.Parse(time.DateTime, "2026-11-01 "+hms)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	if got := []time.Time{st.Machines[1].PowerOn, st.Machines[2].PowerOn, st.Machines[4].PowerOn}; !slices.EqualFunc(got, []time.Time{at("12:01:10"), {}, at("12:03:00")}, time.Time.Equal) {
		t.Errorf("power-on of ceph-1, ceph-2, compute-1: %v", got)
	}
	wantTable := []ServiceRow{
		{Machine: "ceph-1", Service: "systemd-networkd", Status: "ok", Verdict: VerdictVerified, HealthyAt: at("12:02:00"), ToHealthyS: 50, Since: at("12:02:00")},
		{Machine: "ceph-1", Service: "systemd-timesyncd", Status: "warn", Verdict: VerdictFailed, Since: at("12:03:00"), Detail: "clock not synchronised"},
		{Machine: "ceph-1", Service: "ceph-mon", Status: "starting", Verdict: VerdictStarting, Since: at("12:02:00"), Detail: "waiting for quorum"},
		{Machine: "ceph-1", Service: "ceph", Status: "ok", Verdict: VerdictVerified, HealthyAt: at("12:03:00"), ToHealthyS: 110, Since: at("12:03:00"),
			Detail: cephDetail[:maxDetailLine-1] + "…"},
		{Machine: "compute-1", Service: hostile[:state.MaxName], Status: "failed", Verdict: VerdictFailed, Since: at("12:03:30"), Detail: hostile},
		{Machine: "compute-1", Service: "k3s", Status: "ok", Verdict: VerdictStandIn, HealthyAt: at("12:03:30"), ToHealthyS: 30, Since: at("12:03:30"), Detail: standInDetail},
	}
	if diff := cmp.Diff(wantTable, st.Services); diff != "" {
		t.Errorf("services (-want +got)\n%s", diff)
	}
	if st.Machines[2].Health != nil || st.Machines[3].Health != nil {
		t.Error("health shown for a machine that never reported it")
	}
	var refused []string
	for _, r := range st.Refused {
		refused = append(refused, r.What+": "+r.Method+" "+r.Path+" "+r.Machine)
	}
	if diff := cmp.Diff([]string{
		"first-boot report: POST /api/v1/booted/" + macC1 + " ceph-1",
		"secrets hand-out: POST /api/v1/secrets/" + macC1 + " ceph-1",
		"install result: POST /api/v1/result/<script>alert(1)</script> ",
		"install progress: POST /api/v1/progress/" + macLost + " ",
		"install manifest: GET /api/v1/install/" + macC3 + " ceph-3",
	}, refused); diff != "" {
		t.Errorf("refused, newest first (-want +got)\n%s", diff)
	}

	// The bench reads these keys by name: pin the shape of "gate".
	var raw struct {
		Gate map[string]any `json:"gate"`
	}
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name": "gate-1", "address": "192.168.1.10", "uptime_s": 3725.42,
		"kiln_rss_bytes": float64(18432 << 10), "mem_used_bytes": float64((3884372 - 3701248) << 10),
		"mem_total_bytes":     float64(3884372 << 10),
		"state_fs_used_bytes": float64(96 << 20), "state_fs_total_bytes": float64(240 << 20),
	}
	if diff := cmp.Diff(want, raw.Gate); diff != "" {
		t.Errorf("gate (-want +got)\n%s", diff)
	}
}

// TestStatusNoTokens: the page is plain HTTP on the lab network; an
// outstanding install token on it would let anyone race the machine.
func TestStatusNoTokens(t *testing.T) {
	f, toks := statusFixture(t)
	for _, path := range []string{"/", "/status.json"} {
		_, body := f.do(t, "GET", path, "")
		for _, tok := range toks {
			if strings.Contains(body, tok) {
				t.Errorf("GET %s shows an install token", path)
			}
		}
	}
}

func TestStatusReadOnly(t *testing.T) {
	f, _ := statusFixture(t)
	for _, path := range []string{"/", "/status.json"} {
		for _, method := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
			req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := f.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(resp.Header.Get("Allow"), "GET") {
				t.Errorf("%s %s = %d (Allow %q), want 405", method, path, resp.StatusCode, resp.Header.Get("Allow"))
			}
		}
		resp, err := f.srv.Client().Head(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("HEAD %s = %d", path, resp.StatusCode)
		}
	}
	resp, err := f.srv.Client().Get(f.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if code, _ := f.do(t, "GET", "/nothing-here", ""); code != 404 {
		t.Errorf("GET /nothing-here = %d, want 404", code)
	}
}

func TestPercentAndDuration(t *testing.T) {
	for _, tc := range []struct {
		done, total int64
		want        int
	}{{0, 0, -1}, {5, 0, -1}, {0, 10, 0}, {5, 10, 50}, {10, 10, 100}, {11, 10, 100}, {-1, 10, -1}, {1, 3, 33}} {
		if got := percent(tc.done, tc.total); got != tc.want {
			t.Errorf("percent(%d, %d) = %d, want %d", tc.done, tc.total, got, tc.want)
		}
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"}, {0, "0s"}, {45 * time.Second, "45s"}, {12*time.Minute + 5*time.Second, "12m05s"},
		{3*time.Hour + 12*time.Minute, "3h12m"}, {52 * time.Hour, "2d04h"},
	} {
		if got := duration(tc.d); got != tc.want {
			t.Errorf("duration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestRefusalsBounded(t *testing.T) {
	var rs refusals
	for i := range maxRefusals + 5 {
		rs.add(Refusal{Path: strconv.Itoa(i)})
	}
	got := rs.newestFirst()
	if len(got) != maxRefusals || got[0].Path != strconv.Itoa(maxRefusals+4) || got[maxRefusals-1].Path != "5" {
		t.Errorf("kept %d, newest %q, oldest %q", len(got), got[0].Path, got[len(got)-1].Path)
	}
	long := strings.Repeat("é", maxRefusalText) // 2 bytes each: the cut falls mid-rune
	if c := clip(long); len(c) > maxRefusalText+3 || !utf8.ValidString(c) {
		t.Errorf("clip: %d bytes, valid UTF-8 %v", len(c), utf8.ValidString(c))
	}
}

// machineRow is one <tr data-machine> of the page: its data-field texts
// outside items, and its items.
type machineRow struct {
	Name   string
	Fields map[string]string
	// Items are the row's secrets hand-outs, first-boot phases, services
	// and refusals, in page order; nil in a want: not checked.
	Items []item
}

// item is one <li data-phase> ("phase NAME"), <li data-service>
// ("service NAME"), <li data-secrets> ("secrets I", the I-th hand-out,
// newest first) or <li data-refusal> ("refusal I") and the data-field
// texts inside it.
type item struct {
	Key    string
	Fields map[string]string
}

// checkRows parses doc (the server's HTML or Chromium's DOM) and checks
// it has exactly want's machines, in order, with want's field texts (a
// field the page leaves out is empty) and items.
func checkRows(t *testing.T, doc string, want []machineRow) {
	t.Helper()
	got, err := pageRows(doc)
	if err != nil {
		t.Fatal(err)
	}
	var gotNames, wantNames []string
	for _, r := range got {
		gotNames = append(gotNames, r.Name)
	}
	for _, r := range want {
		wantNames = append(wantNames, r.Name)
	}
	if diff := cmp.Diff(wantNames, gotNames); diff != "" {
		t.Fatalf("machine rows (-want +got)\n%s", diff)
	}
	for i, w := range want {
		for field, text := range w.Fields {
			if g := got[i].Fields[field]; g != text {
				t.Errorf("%s %s = %q, want %q", w.Name, field, g, text)
			}
		}
		if w.Items == nil {
			continue
		}
		if diff := cmp.Diff(nonEmpty(w.Items), nonEmpty(got[i].Items)); diff != "" {
			t.Errorf("%s hand-outs, phases, services and refusals (-want +got)\n%s", w.Name, diff)
		}
	}
}

// checkServices parses doc and checks its Services table has exactly want's
// rows, in order, with want's field texts (a field left out is empty).
func checkServices(t *testing.T, doc string, want []map[string]string) {
	t.Helper()
	root, err := html.Parse(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	got := []map[string]string{}
	for n := range root.Descendants() {
		if _, ok := attr(n, "data-service-row"); ok && n.Type == html.ElementNode {
			fields := map[string]string{}
			collect(n, fields, nil)
			got = append(got, fields)
		}
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreMapEntries(func(_, v string) bool { return v == "" })); diff != "" {
		t.Errorf("services table (-want +got)\n%s", diff)
	}
}

// pageRows finds every <tr data-machine> and the whitespace-normalised
// text of each data-field element inside it.
func pageRows(doc string) ([]machineRow, error) {
	root, err := html.Parse(strings.NewReader(doc))
	if err != nil {
		return nil, err
	}
	var rows []machineRow
	for n := range root.Descendants() {
		if n.Type != html.ElementNode || n.Data != "tr" {
			continue
		}
		name, ok := attr(n, "data-machine")
		if !ok {
			continue
		}
		r := machineRow{Name: name, Fields: map[string]string{}, Items: []item{}}
		collect(n, r.Fields, &r.Items)
		rows = append(rows, r)
	}
	return rows, nil
}

// collect puts the data-field texts under n into fields, but those of an
// item (a phase or service) into an item of their own.
func collect(n *html.Node, fields map[string]string, items *[]item) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != html.ElementNode {
			continue
		}
		if key, ok := itemKey(c); ok && items != nil {
			it := item{Key: key, Fields: map[string]string{}}
			collect(c, it.Fields, nil)
			*items = append(*items, it)
			continue
		}
		if field, ok := attr(c, "data-field"); ok {
			fields[field] = ownText(c)
		}
		collect(c, fields, items)
	}
}

// nonEmpty drops the empty fields of items: a field the page leaves out
// is empty.
func nonEmpty(items []item) []item {
	out := []item{}
	for _, it := range items {
		f := map[string]string{}
		for k, v := range it.Fields {
			if v != "" {
				f[k] = v
			}
		}
		out = append(out, item{it.Key, f})
	}
	return out
}

func itemKey(n *html.Node) (string, bool) {
	for _, k := range []struct{ attr, key string }{
		{"data-phase", "phase"}, {"data-service", "service"}, {"data-secrets", "secrets"}, {"data-refusal", "refusal"},
	} {
		if v, ok := attr(n, k.attr); ok {
			return k.key + " " + v, true
		}
	}
	return "", false
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

// ownText is n's text without that of nested elements that are fields of
// their own or small print (the name cell nests the address).
func ownText(n *html.Node) string {
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// FuzzStatusPageEscapes: whatever an installer reports as its error,
// progress message or hostname, or a machine as a first-boot phase or a
// service (names, task, message, error, detail, in its machine's line and
// in the services table), and whatever a refused request or a hand-out's
// peer carries, a browser's parse of the page shows it as that text in its
// cell, and adds no element.
func FuzzStatusPageEscapes(f *testing.F) {
	for _, s := range []string{hostile, "", "plain", "<!--", "]]>", "<plaintext>", "a\tb\nc", `"'><svg/onload=1>`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) || strings.ContainsAny(s, "\x00\r\f") {
			return // the HTML parser rewrites these; not an escaping question
		}
		health := &HealthStatus{Services: []ServiceStatus{{Name: s, Status: s, Detail: s}}}
		st := Status{Services: ServiceRows(s, time.Time{}, health), Machines: []MachineStatus{{
			Name: "m", Netboot: true, State: state.Failed, Error: s,
			Progress: &ProgressStatus{Phase: "p", Message: s, Percent: -1},
			Booted:   &BootedStatus{Hostname: s, Address: "a"},
			Phases: []PhaseStatus{
				{Name: s, Status: "failed", Task: s, Message: s, Error: s, Attempts: 3, At: time.Unix(0, 0)}, // Now is zero too
				{Name: "p2", Status: s},
			},
			Health:  health,
			Secrets: []SecretsStatus{{To: s}},
		}}, Refused: []Refusal{{Peer: s, What: "x", Method: s, Path: s, MAC: s, Machine: "m", Why: s}}}
		var b strings.Builder
		if err := statusTmpl.Execute(&b, newPage(st)); err != nil {
			t.Fatal(err)
		}
		rows, err := pageRows(b.String())
		if err != nil || len(rows) != 1 {
			t.Fatalf("rows %v, %v", rows, err)
		}
		want := strings.Join(strings.Fields(s), " ")
		if got := rows[0].Fields["error"]; got != want {
			t.Errorf("error cell %q, want %q", got, want)
		}
		if got := rows[0].Fields["progress"]; got != strings.TrimSpace("p "+want) {
			t.Errorf("progress cell %q, want %q", got, "p "+want)
		}
		detail := ""
		if s != "" {
			detail = strings.Join(strings.Fields(s+": "+s), " ")
		}
		wantItems := []item{
			{"secrets 0", map[string]string{"secrets-to": want, "secrets-at": "0001-01-01 00:00:00Z (0s ago)"}},
			{"phase " + s, map[string]string{"phase": want, "phase-status": "failed (attempt 3)", "phase-detail": detail,
				"phase-error": want, "phase-at": "0s ago"}},
			{"phase p2", map[string]string{"phase": "p2", "phase-status": want}},
			{"service " + s, map[string]string{"service": want, "service-status": want, "service-detail": want}},
			{"refusal 0", map[string]string{"refusal-what": "x", "refusal-peer": want, "refusal-why": want, "refusal-at": "0s ago"}},
		}
		if diff := cmp.Diff(nonEmpty(wantItems), nonEmpty(rows[0].Items)); diff != "" {
			t.Errorf("hand-outs, phases, services and refusals (-want +got)\n%s", diff)
		}
		checkServices(t, b.String(), []map[string]string{{"svc-machine": want, "svc-name": want,
			"verdict": Verdict(health.Services[0]), "to-healthy": "-", "svc-since": "-",
			"svc-detail": strings.Join(strings.Fields(FirstLine(s, maxDetailLine)), " ")}})
	})
}

// TestPhaseItems: how a phase reads on the page, whatever its state.
func TestPhaseItems(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   PhaseStatus
		want phaseItem
	}{
		{"pending", PhaseStatus{Name: "announce", Status: PhasePending},
			phaseItem{Name: "announce", Class: "s-idle", StatusText: "pending"}},
		{"task running", PhaseStatus{Name: "storage", Status: "running", Task: "grow-state", Message: "task 1 of 1", Attempts: 1, At: now.Add(-5 * time.Second)},
			phaseItem{Name: "storage", Class: "s-busy", StatusText: "running", Detail: "grow-state: task 1 of 1", When: "5s ago", At: "2026-11-01 11:59:55Z"}},
		{"retry after a failure", PhaseStatus{Name: "network", Status: "running", Error: "never appeared", Attempts: 3, At: now},
			phaseItem{Name: "network", Class: "s-busy", StatusText: "running (attempt 3)", ErrorLabel: "previous attempt failed: ", Error: "never appeared", When: "0s ago", At: "2026-11-01 12:00:00Z"}},
		{"failed", PhaseStatus{Name: "network", Status: "failed", Task: "wait-address", Error: "never appeared", Attempts: 1, At: now},
			phaseItem{Name: "network", Class: "s-bad", StatusText: "failed (attempt 1)", Detail: "wait-address", Error: "never appeared", When: "0s ago", At: "2026-11-01 12:00:00Z"}},
		{"unknown status", PhaseStatus{Name: "x", Status: `"><b>`}, phaseItem{Name: "x", Class: "s-idle", StatusText: `"><b>`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRow(now, MachineStatus{Netboot: true, Phases: []PhaseStatus{tc.in}})
			if diff := cmp.Diff([]phaseItem{tc.want}, r.PhaseItems); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

// TestMachineListsBounded: a machine's line shows its latest hand-outs
// and refusals, newest first and at most a few; the rest are counted.
func TestMachineListsBounded(t *testing.T) {
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	handouts := func(n int) []SecretsStatus {
		var hs []SecretsStatus // oldest first, as in status.json
		for i := range n {
			hs = append(hs, SecretsStatus{At: base.Add(time.Duration(i) * time.Minute), To: "10.0.0." + strconv.Itoa(i)})
		}
		return hs
	}
	refused := func(machines ...string) []Refusal {
		var rs []Refusal // newest first, as in status.json
		for i, m := range machines {
			rs = append(rs, Refusal{At: base, Peer: "10.0.1." + strconv.Itoa(i), What: "secrets hand-out", Machine: m, Why: "wrong or consumed install token"})
		}
		return rs
	}
	for _, tc := range []struct {
		name     string
		handouts []SecretsStatus
		refused  []Refusal
		// Want: the fields of the machine's items, then its counts.
		wantItems             []item
		wantEarlier, wantMore string
	}{
		{name: "none", wantItems: []item{}},
		{name: "two of each, another machine's left out",
			handouts: handouts(2), refused: refused("m", "other", "m"),
			wantItems: []item{
				{"secrets 0", map[string]string{"secrets-to": "10.0.0.1", "secrets-at": "2026-11-01 12:01:00Z (8m00s ago)"}},
				{"secrets 1", map[string]string{"secrets-to": "10.0.0.0", "secrets-at": "2026-11-01 12:00:00Z (9m00s ago)"}},
				{"refusal 0", map[string]string{"refusal-what": "secrets hand-out", "refusal-peer": "10.0.1.0", "refusal-why": "wrong or consumed install token", "refusal-at": "9m00s ago"}},
				{"refusal 1", map[string]string{"refusal-what": "secrets hand-out", "refusal-peer": "10.0.1.2", "refusal-why": "wrong or consumed install token", "refusal-at": "9m00s ago"}},
			}},
		{name: "more than shown",
			handouts: handouts(state.MaxHandouts), refused: refused("m", "m", "m", "m", "m"),
			wantItems: []item{
				{"secrets 0", map[string]string{"secrets-to": "10.0.0.7", "secrets-at": "2026-11-01 12:07:00Z (2m00s ago)"}},
				{"secrets 1", map[string]string{"secrets-to": "10.0.0.6", "secrets-at": "2026-11-01 12:06:00Z (3m00s ago)"}},
				{"secrets 2", map[string]string{"secrets-to": "10.0.0.5", "secrets-at": "2026-11-01 12:05:00Z (4m00s ago)"}},
				{"refusal 0", map[string]string{"refusal-what": "secrets hand-out", "refusal-peer": "10.0.1.0", "refusal-why": "wrong or consumed install token", "refusal-at": "9m00s ago"}},
				{"refusal 1", map[string]string{"refusal-what": "secrets hand-out", "refusal-peer": "10.0.1.1", "refusal-why": "wrong or consumed install token", "refusal-at": "9m00s ago"}},
				{"refusal 2", map[string]string{"refusal-what": "secrets hand-out", "refusal-peer": "10.0.1.2", "refusal-why": "wrong or consumed install token", "refusal-at": "9m00s ago"}},
			},
			wantEarlier: "and 5 earlier (status.json)", wantMore: "2 more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := Status{Now: base.Add(9 * time.Minute), Refused: tc.refused, Machines: []MachineStatus{
				{Name: "m", Netboot: true, State: state.Installing, Secrets: tc.handouts},
				{Name: "other", Netboot: true, State: state.Install},
			}}
			var b strings.Builder
			if err := statusTmpl.Execute(&b, newPage(st)); err != nil {
				t.Fatal(err)
			}
			rows, err := pageRows(b.String())
			if err != nil || len(rows) != 2 {
				t.Fatalf("rows %v, %v", rows, err)
			}
			if diff := cmp.Diff(nonEmpty(tc.wantItems), nonEmpty(rows[0].Items)); diff != "" {
				t.Errorf("items (-want +got)\n%s", diff)
			}
			got := map[string]string{"earlier": rows[0].Fields["secrets-earlier"], "more": rows[0].Fields["refused-more"]}
			if diff := cmp.Diff(map[string]string{"earlier": tc.wantEarlier, "more": tc.wantMore}, got); diff != "" {
				t.Errorf("counts (-want +got)\n%s", diff)
			}
		})
	}
}

func TestRequestName(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/install/52:54:00:00:01:01":  "install manifest",
		"/api/v1/progress/52:54:00:00:01:01": "install progress",
		"/api/v1/result/x":                   "install result",
		"/api/v1/secrets/52:54:00:00:01:01":  "secrets hand-out",
		"/api/v1/booted/52:54:00:00:01:01":   "first-boot report",
		"/api/v1/phase/52:54:00:00:01:01":    "first-boot phase report",
		"/api/v1/health/52:54:00:00:01:01":   "health report",
		"/api/v1/other/<script>":             "request",
	} {
		if got := requestName(path); got != want {
			t.Errorf("requestName(%q) = %q, want %q", path, got, want)
		}
	}
}

// TestVerdict: VERIFIED only for the real program ok; a stand-in, however
// ok, is STAND-IN; a warning is not healthy.
func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   ServiceStatus
		want string
	}{
		{"ok", ServiceStatus{Name: "ceph", Status: "ok", Detail: "HEALTH_OK: monitors 3/3 in quorum"}, VerdictVerified},
		{"ok without a detail", ServiceStatus{Name: "consul", Status: "ok"}, VerdictVerified},
		{"a stand-in", ServiceStatus{Name: "k3s", Status: "ok", Detail: "STAND-IN: k3s version v0.0.0-kiln-standin"}, VerdictStandIn},
		{"a stand-in, its detail indented", ServiceStatus{Name: "k3s", Status: "ok", Detail: "\n  STAND-IN: k3s"}, VerdictStandIn},
		{"a stand-in named later is the real program's word", ServiceStatus{Name: "k3s", Status: "ok", Detail: "node Ready (was a STAND-IN)"}, VerdictVerified},
		{"a failed stand-in", ServiceStatus{Name: "k3s", Status: "failed", Detail: "STAND-IN: exit status 1"}, VerdictFailed},
		{"starting", ServiceStatus{Name: "vault", Status: "starting", Detail: "sealed"}, VerdictStarting},
		{"warn is not healthy", ServiceStatus{Name: "ceph", Status: "warn", Detail: "HEALTH_WARN: OSD_DOWN"}, VerdictFailed},
		{"failed", ServiceStatus{Name: "ceph-data", Status: "failed"}, VerdictFailed},
		{"unknown", ServiceStatus{Name: "x", Status: "OK"}, VerdictFailed},
		{"none", ServiceStatus{Name: "x"}, VerdictFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Verdict(tc.in); got != tc.want {
				t.Errorf("Verdict(%+v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestServiceRows: a service's time to healthy counts from its machine's
// last netboot, and says when it cannot.
func TestServiceRows(t *testing.T) {
	on := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	h := &HealthStatus{At: on.Add(10 * time.Minute), Services: []ServiceStatus{
		{Name: "ceph", Status: "ok", Detail: "\nHEALTH_OK: 3 OSDs\nmore", Since: on.Add(7 * time.Minute), HealthyAt: on.Add(6*time.Minute + 12*time.Second + 400*time.Millisecond)},
		{Name: "vault", Status: "starting", Since: on.Add(time.Minute)},
		{Name: "consul", Status: "warn", Since: on.Add(9 * time.Minute), HealthyAt: on.Add(2 * time.Hour)},
	}}
	for _, tc := range []struct {
		name    string
		powerOn time.Time
		h       *HealthStatus
		want    []string // service: verdict, time to healthy, detail
	}{
		{"no report", on, nil, nil},
		{"from the netboot", on, h, []string{"ceph: VERIFIED 6m12s HEALTH_OK: 3 OSDs", "vault: STARTING - ", "consul: FAILED 2h00m "}},
		{"no netboot seen", time.Time{}, h, []string{"ceph: VERIFIED ? HEALTH_OK: 3 OSDs", "vault: STARTING - ", "consul: FAILED ? "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range ServiceRows("ceph-1", tc.powerOn, tc.h) {
				if r.Machine != "ceph-1" {
					t.Errorf("row of machine %q", r.Machine)
				}
				got = append(got, r.Service+": "+r.Verdict+" "+r.TimeToHealthy()+" "+r.Detail)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}
