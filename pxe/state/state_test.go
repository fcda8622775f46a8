package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

const mac = "52:54:00:00:01:01"

func open(t *testing.T, dir string) *Store {
	t.Helper()
	clock := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	s, err := Open(dir, func() time.Time { clock = clock.Add(time.Second); return clock })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNeverSeenIsInstall(t *testing.T) {
	s := open(t, t.TempDir())
	r, err := s.Get(mac, "ceph-1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Record{MAC: mac, Machine: "ceph-1", State: Install}, r); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	tok, err := s.ArmToken(mac, "ceph-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 32 {
		t.Fatalf("token %q: want 32 hex chars", tok)
	}
	if _, err := s.BeginInstall(mac, "ceph-1", "nope"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("BeginInstall(wrong token) = %v, want ErrBadToken", err)
	}
	if _, err := s.BeginInstall(mac, "ceph-1", tok); err != nil {
		t.Fatal(err)
	}
	// A restart (a new Store on the same dir) sees the same record.
	s = open(t, dir)
	r, err := s.ReportProgress(mac, "ceph-1", tok, Progress{Phase: "write", Done: 1, Total: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != Installing || r.Progress.Phase != "write" || r.ProgressAt.IsZero() {
		t.Fatalf("after progress: %+v", r)
	}
	if r, err = s.Finish(mac, "ceph-1", tok, true, ""); err != nil || r.State != Installed || r.Token != "" || r.Installs != 1 {
		t.Fatalf("Finish ok = %+v, %v", r, err)
	}
	// The token is consumed: a second use is refused.
	if _, err := s.BeginInstall(mac, "ceph-1", tok); !errors.Is(err, ErrBadToken) {
		t.Fatalf("reuse of consumed token = %v, want ErrBadToken", err)
	}
	if _, err := s.ArmToken(mac, "ceph-1"); !errors.Is(err, ErrWrongState) {
		t.Fatalf("ArmToken(installed) = %v, want ErrWrongState", err)
	}
	if r, err = s.Rearm(mac, "ceph-1"); err != nil || r.State != Install || r.Progress != nil || !r.ProgressAt.IsZero() {
		t.Fatalf("Rearm = %+v, %v", r, err)
	}
	tok2, err := s.ArmToken(mac, "ceph-1")
	if err != nil || tok2 == tok {
		t.Fatalf("ArmToken after re-arm = %q, %v", tok2, err)
	}
	// The second install is a reinstall: the record remembers the first.
	if r, err = s.BeginInstall(mac, "ceph-1", tok2); err != nil || r.Installs != 1 {
		t.Fatalf("BeginInstall after re-arm = %+v, %v", r, err)
	}
	r, err = s.Finish(mac, "ceph-1", tok2, false, "disk WD-X not found")
	if err != nil || r.State != Failed || r.Error != "disk WD-X not found" || r.Installs != 1 {
		t.Fatalf("Finish error = %+v, %v", r, err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].State != Failed {
		t.Fatalf("List = %+v, %v", list, err)
	}
}

func TestProgressNeedsInstalling(t *testing.T) {
	s := open(t, t.TempDir())
	tok, err := s.ArmToken(mac, "ceph-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReportProgress(mac, "ceph-1", tok, Progress{Phase: "x"}); !errors.Is(err, ErrWrongState) {
		t.Fatalf("progress before install manifest = %v, want ErrWrongState", err)
	}
}

func TestNormalizeMAC(t *testing.T) {
	for in, want := range map[string]string{
		"52:54:00:00:01:01": "52:54:00:00:01:01",
		"52-54-00-00-01-0A": "52:54:00:00:01:0a",
	} {
		got, err := NormalizeMAC(in)
		if err != nil || got != want {
			t.Errorf("NormalizeMAC(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "zz", "../../etc/passwd", "00:00:5e:00:53:01:02:03"} {
		if _, err := NormalizeMAC(bad); err == nil {
			t.Errorf("NormalizeMAC(%q): want error", bad)
		}
	}
}

// TestHandOutSecrets: an install takes its secrets once, with its own
// token, after its manifest; a later install (a fresh token) may again.
func TestHandOutSecrets(t *testing.T) {
	s := open(t, t.TempDir())
	tok, err := s.ArmToken(mac, "ceph-1")
	if err != nil {
		t.Fatal(err)
	}
	// The refusal says which state the machine is in: the status page
	// shows it as the why.
	if _, err := s.HandOutSecrets(mac, "ceph-1", tok, "192.168.1.50:1234"); !errors.Is(err, ErrWrongState) || !strings.Contains(err.Error(), "its state is install") {
		t.Fatalf("secrets before the manifest = %v, want ErrWrongState naming state install", err)
	}
	if _, err := s.BeginInstall(mac, "ceph-1", tok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HandOutSecrets(mac, "ceph-1", "nope", "192.168.1.50:1234"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("secrets with a wrong token = %v, want ErrBadToken", err)
	}
	r, err := s.HandOutSecrets(mac, "ceph-1", tok, "192.168.1.50:1234")
	if err != nil || len(r.Handouts) != 1 || r.Handouts[0].Remote != "192.168.1.50:1234" || r.Handouts[0].At.IsZero() {
		t.Fatalf("first hand-out = %+v, %v", r.Handouts, err)
	}
	if _, err := s.HandOutSecrets(mac, "ceph-1", tok, "192.168.1.66:999"); !errors.Is(err, ErrSecretsTaken) {
		t.Fatalf("second hand-out = %v, want ErrSecretsTaken", err)
	}
	if _, err := s.Finish(mac, "ceph-1", tok, true, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HandOutSecrets(mac, "ceph-1", tok, "192.168.1.50:1234"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("hand-out after the install = %v, want ErrBadToken", err)
	}
	if _, err := s.Rearm(mac, "ceph-1"); err != nil {
		t.Fatal(err)
	}
	tok2, _ := s.ArmToken(mac, "ceph-1")
	if _, err := s.BeginInstall(mac, "ceph-1", tok2); err != nil {
		t.Fatal(err)
	}
	r, err = s.HandOutSecrets(mac, "ceph-1", tok2, "192.168.1.50:1234")
	if err != nil || len(r.Handouts) != 2 {
		t.Fatalf("hand-out to a new install = %+v, %v; want both hand-outs kept", r.Handouts, err)
	}
}

// TestReportPhase: phases keep the order they were first reported in; a
// start counts an attempt, a failure keeps its error until the phase is
// done, and a record survives a restart of the gate.
func TestReportPhase(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	for _, p := range []PhaseReport{
		{Phase: "storage", Status: PhaseRunning},
		{Phase: "storage", Status: PhaseRunning, Task: "grow-state", Message: "task 1 of 1"},
		{Phase: "storage", Status: PhaseDone},
		{Phase: "network", Status: PhaseRunning},
		{Phase: "network", Status: PhaseFailed, Task: "wait-address", Error: "never appeared"},
		{Phase: "network", Status: PhaseRunning}, // the retry
		{Phase: "network", Status: PhaseRunning, Task: "wait-address"},
		{Phase: "announce", Status: PhaseRunning, Task: "console"}, // its start was lost
	} {
		if _, err := s.ReportPhase(mac, "ceph-1", p); err != nil {
			t.Fatal(err)
		}
	}
	s = open(t, dir)
	r, err := s.Get(mac, "ceph-1")
	if err != nil {
		t.Fatal(err)
	}
	// The test clock ticks a second at each reading, two per report:
	// report n arrives at second 2n-1.
	at := func(n int) time.Time { return time.Date(2026, 11, 1, 12, 0, 2*n-1, 0, time.UTC) }
	want := []Phase{
		{Name: "storage", Status: PhaseDone, Attempts: 1, Started: at(1), At: at(3)},
		{Name: "network", Status: PhaseRunning, Task: "wait-address", Error: "never appeared", Attempts: 2, Started: at(6), At: at(7)},
		{Name: "announce", Status: PhaseRunning, Task: "console", Attempts: 1, Started: at(8), At: at(8)},
	}
	if d := cmp.Diff(want, r.Phases); d != "" {
		t.Errorf("phases (-want +got)\n%s", d)
	}
	r, err = s.ReportPhase(mac, "ceph-1", PhaseReport{Phase: "network", Status: PhaseDone, Message: "up"})
	if err != nil || r.Phases[1].Error != "" || r.Phases[1].Status != PhaseDone || r.Phases[1].Attempts != 2 {
		t.Errorf("network done = %+v, %v", r.Phases[1], err)
	}
}

// TestReportsBounded: what a machine reports cannot grow its record
// without bound.
func TestReportsBounded(t *testing.T) {
	s := open(t, t.TempDir())
	long := strings.Repeat("é", MaxText) // 2 bytes each: cuts fall mid-rune
	for i := range MaxPhases {
		if _, err := s.ReportPhase(mac, "ceph-1", PhaseReport{Phase: fmt.Sprint("phase-", i), Status: PhaseFailed, Task: long, Message: long, Error: long}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.ReportPhase(mac, "ceph-1", PhaseReport{Phase: "one-more", Status: PhaseRunning})
	if !errors.Is(err, ErrTooManyPhases) {
		t.Fatalf("phase %d = %v, want ErrTooManyPhases", MaxPhases+1, err)
	}
	// A long name clipped is still a new name; a known phase still
	// reports.
	r, err := s.ReportPhase(mac, "ceph-1", PhaseReport{Phase: long, Status: PhaseRunning})
	if err == nil {
		t.Errorf("a new phase under a long name was added: %d phases", len(r.Phases))
	}
	r, err = s.ReportPhase(mac, "ceph-1", PhaseReport{Phase: "phase-0", Status: PhaseDone})
	if err != nil || len(r.Phases) != MaxPhases {
		t.Fatalf("known phase = %d phases, %v", len(r.Phases), err)
	}
	for _, ph := range r.Phases {
		for _, f := range []struct {
			s string
			n int
		}{{ph.Name, MaxName}, {ph.Task, MaxName}, {ph.Message, MaxText}, {ph.Error, MaxText}} {
			if len(f.s) > f.n || !utf8.ValidString(f.s) {
				t.Errorf("phase %s: a string of %d bytes (at most %d), valid UTF-8 %v", ph.Name, len(f.s), f.n, utf8.ValidString(f.s))
			}
		}
	}

	var many []Service
	for i := range MaxServices + 5 {
		many = append(many, Service{Name: fmt.Sprint("svc-", i, long), Status: "ok", Detail: long})
	}
	r, err = s.ReportHealth(mac, "ceph-1", HealthReport{Services: many})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Health.Services) != MaxServices || r.Health.At.IsZero() {
		t.Fatalf("health kept %d services at %v, want %d", len(r.Health.Services), r.Health.At, MaxServices)
	}
	for _, sv := range r.Health.Services {
		if len(sv.Name) > MaxName || len(sv.Detail) > MaxText || !utf8.ValidString(sv.Name) || !utf8.ValidString(sv.Detail) {
			t.Fatalf("service %q: name %d bytes, detail %d bytes", sv.Name, len(sv.Name), len(sv.Detail))
		}
	}
	// Each report replaces the last.
	r, err = s.ReportHealth(mac, "ceph-1", HealthReport{Services: []Service{{Name: "k3s", Status: "starting"}}})
	if err != nil || len(r.Health.Services) != 1 {
		t.Fatalf("second health report = %+v, %v", r.Health, err)
	}
}

// TestNewInstallForgetsFirstBoot: a reinstalled machine's first boot
// starts afresh; a retried manifest fetch of the same install keeps it.
func TestNewInstallForgetsFirstBoot(t *testing.T) {
	s := open(t, t.TempDir())
	if _, err := s.ReportPhase(mac, "ceph-1", PhaseReport{Phase: "storage", Status: PhaseDone}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReportHealth(mac, "ceph-1", HealthReport{Services: []Service{{Name: "k3s", Status: "ok"}}}); err != nil {
		t.Fatal(err)
	}
	tok, err := s.ArmToken(mac, "ceph-1")
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Get(mac, "ceph-1")
	if err != nil || len(r.Phases) != 1 || r.Health == nil {
		t.Fatalf("arming forgot the running system's first boot: %+v, %v", r, err)
	}
	if r, err = s.BeginInstall(mac, "ceph-1", tok); err != nil || r.Phases != nil || r.Health != nil {
		t.Fatalf("a new install kept the old first boot: %+v, %v", r, err)
	}
	if _, err := s.ReportPhase(mac, "ceph-1", PhaseReport{Phase: "storage", Status: PhaseRunning}); err != nil {
		t.Fatal(err)
	}
	if r, err = s.BeginInstall(mac, "ceph-1", tok); err != nil || len(r.Phases) != 1 {
		t.Fatalf("a retried fetch forgot the phases: %+v, %v", r, err)
	}
}

// TestServiceSinceAndHealthyAt: since when each service has its status,
// and when it was first healthy in the machine's current boot, across its
// health reports, a reboot (a netboot) and a first-boot report.
func TestServiceSinceAndHealthyAt(t *testing.T) {
	s := open(t, t.TempDir())
	// The test clock ticks a second at each reading, two per step: step
	// n happens at second 2n-1.
	at := func(n int) time.Time { return time.Date(2026, 11, 1, 12, 0, 2*n-1, 0, time.UTC) }
	report := func(svs ...Service) func() (Record, error) {
		return func() (Record, error) { return s.ReportHealth(mac, "ceph-1", HealthReport{Services: svs}) }
	}
	netboot := func() (Record, error) { return s.MarkNetbooted(mac, "ceph-1") }
	booted := func() (Record, error) { return s.MarkBooted(mac, "ceph-1", Booted{Hostname: "ceph-1"}) }
	const standIn = "STAND-IN: k3s version v0.0.0-kiln-standin"
	for i, step := range []struct {
		name string
		do   func() (Record, error)
		want []Service
	}{
		{"a report before any netboot the gate saw", report(Service{Name: "ceph", Status: "ok"}),
			[]Service{{Name: "ceph", Status: "ok", Since: at(1), HealthyAt: at(1)}}},
		{"power-on: the last boot's word stays, healthy in no boot yet", netboot,
			[]Service{{Name: "ceph", Status: "ok", Since: at(1)}}},
		{"the new boot's first report starts since afresh, whatever the status", report(
			Service{Name: "ceph", Status: "ok", Detail: "HEALTH_OK"}, Service{Name: "k3s", Status: "starting", Since: at(99)}),
			[]Service{
				{Name: "ceph", Status: "ok", Detail: "HEALTH_OK", Since: at(3), HealthyAt: at(3)},
				{Name: "k3s", Status: "starting", Since: at(3)},
			}},
		{"unchanged statuses keep their since, a new detail too", report(
			Service{Name: "ceph", Status: "ok", Detail: "HEALTH_OK: 3 OSDs"}, Service{Name: "k3s", Status: "starting"}),
			[]Service{
				{Name: "ceph", Status: "ok", Detail: "HEALTH_OK: 3 OSDs", Since: at(3), HealthyAt: at(3)},
				{Name: "k3s", Status: "starting", Since: at(3)},
			}},
		{"a warning is not healthy, but ceph was", report(
			Service{Name: "ceph", Status: "warn"}, Service{Name: "k3s", Status: "ok", Detail: standIn}),
			[]Service{
				{Name: "ceph", Status: "warn", Since: at(5), HealthyAt: at(3)},
				{Name: "k3s", Status: "ok", Detail: standIn, Since: at(5), HealthyAt: at(5)},
			}},
		{"the first-boot report is no boot of its own", booted,
			[]Service{
				{Name: "ceph", Status: "warn", Since: at(5), HealthyAt: at(3)},
				{Name: "k3s", Status: "ok", Detail: standIn, Since: at(5), HealthyAt: at(5)},
			}},
		{"healthy again: the first time in this boot stays", report(
			Service{Name: "ceph", Status: "ok"}, Service{Name: "k3s", Status: "ok", Detail: standIn}, Service{Name: "vault", Status: "failed"}),
			[]Service{
				{Name: "ceph", Status: "ok", Since: at(7), HealthyAt: at(3)},
				{Name: "k3s", Status: "ok", Detail: standIn, Since: at(5), HealthyAt: at(5)},
				{Name: "vault", Status: "failed", Since: at(7)},
			}},
		{"reboot", netboot,
			[]Service{
				{Name: "ceph", Status: "ok", Since: at(7)},
				{Name: "k3s", Status: "ok", Detail: standIn, Since: at(5)},
				{Name: "vault", Status: "failed", Since: at(7)},
			}},
		{"the reboot's first report", report(
			Service{Name: "ceph", Status: "starting"}, Service{Name: "k3s", Status: "ok", Detail: standIn}, Service{Name: "vault", Status: "failed"}),
			[]Service{
				{Name: "ceph", Status: "starting", Since: at(9)},
				{Name: "k3s", Status: "ok", Detail: standIn, Since: at(9), HealthyAt: at(9)},
				{Name: "vault", Status: "failed", Since: at(9)},
			}},
		{"a service left out", report(Service{Name: "k3s", Status: "ok", Detail: standIn}),
			[]Service{{Name: "k3s", Status: "ok", Detail: standIn, Since: at(9), HealthyAt: at(9)}}},
		{"and back: it starts afresh", report(Service{Name: "k3s", Status: "ok", Detail: standIn}, Service{Name: "vault", Status: "failed"}),
			[]Service{
				{Name: "k3s", Status: "ok", Detail: standIn, Since: at(9), HealthyAt: at(9)},
				{Name: "vault", Status: "failed", Since: at(11)},
			}},
	} {
		r, err := step.do()
		if err != nil {
			t.Fatalf("step %d, %s: %v", i+1, step.name, err)
		}
		var got []Service
		if r.Health != nil {
			got = r.Health.Services
		}
		if diff := cmp.Diff(step.want, got); diff != "" {
			t.Errorf("step %d, %s: services (-want +got)\n%s", i+1, step.name, diff)
		}
	}
	r, err := s.Get(mac, "ceph-1")
	if err != nil || !r.Netbooted.Equal(at(8)) {
		t.Errorf("last netboot %v, %v; want %v", r.Netbooted, err, at(8))
	}
}

// TestTornWriteNeverRead: a power cut at any byte of a record's write
// leaves the old record on disk beside a partial temporary file, or the
// new record once renamed. The gate, started again, reads the old record
// or the new one whole, never a part, and sweeps the leftover.
func TestTornWriteNeverRead(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	tok, err := s.ArmToken(mac, "ceph-1")
	if err != nil {
		t.Fatal(err)
	}
	old, err := s.BeginInstall(mac, "ceph-1", tok)
	if err != nil {
		t.Fatal(err)
	}
	next := old
	next.State, next.Progress = Installed, &Progress{Phase: "done", Message: "installed"}
	data, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := s.path(mac)
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp123456")
	for n := 0; n <= len(data); n++ {
		if err := os.WriteFile(tmp, data[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		again := open(t, dir) // the gate after the power cut
		got, err := again.Get(mac, "ceph-1")
		if err != nil {
			t.Fatalf("cut after %d of %d bytes: %v", n, len(data), err)
		}
		if diff := cmp.Diff(old, got); diff != "" {
			t.Fatalf("cut after %d of %d bytes: read (-old +got):\n%s", n, len(data), diff)
		}
		if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("cut after %d bytes: the partial file is still there (%v)", n, err)
		}
	}
	// Cut after the rename: the new record, whole.
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	got, err := open(t, dir).Get(mac, "ceph-1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(next, got); diff != "" {
		t.Errorf("after the rename (-new +got):\n%s", diff)
	}
}

// TestRearmStalled: an install the gate has not heard from for longer
// than the timeout is re-armed, its token dead, with the reason kept; a
// young one is left alone; one at MaxAttempts is Failed instead.
func TestRearmStalled(t *testing.T) {
	clock := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	s, err := Open(t.TempDir(), func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	const other = "52:54:00:00:01:02"
	begin := func(mac, name string) string {
		t.Helper()
		tok, err := s.ArmToken(mac, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.BeginInstall(mac, name, tok); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tok := begin(mac, "ceph-1")
	if _, err := s.ReportProgress(mac, "ceph-1", tok, Progress{Phase: "write-root", Message: "kiln-root", Done: 64 << 20, Total: 300 << 20}); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(50 * time.Minute)
	begin(other, "ceph-2")
	clock = clock.Add(20 * time.Minute)

	changed, err := s.RearmStalled(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 1 || changed[0].Machine != "ceph-1" {
		t.Fatalf("re-armed %+v, want ceph-1 alone", changed)
	}
	r, _ := s.Get(mac, "ceph-1")
	want := "re-armed by the gate at 2026-11-01T13:10:00Z: no word from its install for 1h10m0s (last at write-root kiln-root 64/300 MiB)"
	if r.State != Install || r.Token != "" || r.Rearmed != want {
		t.Errorf("ceph-1: %s token %q rearmed %q, want install, no token, %q", r.State, r.Token, r.Rearmed, want)
	}
	if _, err := s.ReportProgress(mac, "ceph-1", tok, Progress{Phase: "verify"}); !errors.Is(err, ErrBadToken) {
		t.Errorf("the hung installer's report after the re-arm: %v, want ErrBadToken", err)
	}
	if r, _ := s.Get(other, "ceph-2"); r.State != Installing {
		t.Errorf("ceph-2, 20 minutes into its install: %s", r.State)
	}

	for r.Attempts < MaxAttempts {
		begin(mac, "ceph-1")
		r, _ = s.Get(mac, "ceph-1")
	}
	clock = clock.Add(2 * time.Hour)
	if _, err := s.RearmStalled(time.Hour); err != nil {
		t.Fatal(err)
	}
	r, _ = s.Get(mac, "ceph-1")
	if r.State != Failed || !strings.Contains(r.Error, "5 installs in a row ended without a result") {
		t.Errorf("ceph-1 after %d stalled installs: %s %q", MaxAttempts, r.State, r.Error)
	}
	if _, err := s.ArmToken(mac, "ceph-1"); !errors.Is(err, ErrWrongState) {
		t.Errorf("arming a failed machine: %v", err)
	}
	if r, _ := s.Rearm(mac, "ceph-1"); r.Attempts != 0 || r.Rearmed != "" || r.State != Install {
		t.Errorf("after the operator's re-arm: %+v", r)
	}
}

// TestBootedCompletesInstall: the first-boot report of a machine whose
// installer's result was lost records it installed; the report of one in
// another state changes no state.
func TestBootedCompletesInstall(t *testing.T) {
	s := open(t, t.TempDir())
	tok, err := s.ArmToken(mac, "ceph-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginInstall(mac, "ceph-1", tok); err != nil {
		t.Fatal(err)
	}
	r, err := s.MarkBooted(mac, "ceph-1", Booted{Hostname: "ceph-1", Address: "192.168.1.11/24"})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != Installed || r.Token != "" || r.Installs != 1 || r.Attempts != 0 {
		t.Errorf("after the first-boot report: %s token %q installs %d attempts %d", r.State, r.Token, r.Installs, r.Attempts)
	}
	if _, err := s.Finish(mac, "ceph-1", tok, true, ""); !errors.Is(err, ErrBadToken) {
		t.Errorf("the lost result arriving late: %v, want ErrBadToken", err)
	}
	if _, err := s.Rearm(mac, "ceph-1"); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.MarkBooted(mac, "ceph-1", Booted{Hostname: "ceph-1"}); r.State != Install {
		t.Errorf("a re-armed machine's report: %s, want install", r.State)
	}
}

// TestDiskBoot: which starts an OS reports are power-ons the gate did not
// see (a UEFI machine booting its disk first), and which a netboot began.
func TestDiskBoot(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, tc := range []struct {
		name string
		r    Record
		boot time.Time
		want time.Time
	}{
		{"no start reported", Record{State: Installed, Netbooted: t0}, time.Time{}, time.Time{}},
		{"BIOS: the netboot the gate sent to its disk", Record{State: Installed, Since: at(-time.Hour), Netbooted: t0}, at(12 * time.Second), time.Time{}},
		{"BIOS on slow firmware: still that netboot's boot", Record{State: Installed, Since: at(-time.Hour), Netbooted: t0}, at(2 * time.Minute), time.Time{}},
		{"UEFI, power-cycled: no netboot", Record{State: Installed, Since: at(-time.Hour), Netbooted: at(-time.Hour)}, t0, t0},
		{"UEFI after its install: the install's netboot began the install", Record{State: Installed, Since: at(40 * time.Second), Netbooted: t0}, at(50 * time.Second), at(50 * time.Second)},
		{"the same disk boot reported again", Record{State: Installed, Netbooted: at(-time.Hour), DiskBoot: t0}, at(2 * time.Second), time.Time{}},
		{"a clock set after boot moved the start a little", Record{State: Installed, Netbooted: at(-time.Hour), DiskBoot: t0}, at(-20 * time.Second), time.Time{}},
		{"a later disk boot", Record{State: Installed, Netbooted: at(-time.Hour), DiskBoot: at(-10 * time.Minute)}, t0, t0},
		{"never netbooted by this gate", Record{State: Install}, t0, t0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := diskBoot(&tc.r, tc.boot); !got.Equal(tc.want) {
				t.Errorf("diskBoot = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestHealthAfterDiskBoot: a report from a boot no netboot began starts
// the services' tracking afresh, as a netboot does, and moves PowerOn.
func TestHealthAfterDiskBoot(t *testing.T) {
	clock := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	s, err := Open(t.TempDir(), func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkNetbooted(mac, "ceph-1"); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Minute)
	ok := []Service{{Name: "k3s", Status: "ok"}}
	r, err := s.ReportHealth(mac, "ceph-1", HealthReport{Services: ok, Boot: clock.Add(-50 * time.Second)})
	if err != nil || !r.DiskBoot.IsZero() || !r.Health.Services[0].HealthyAt.Equal(clock) {
		t.Fatalf("the netboot's own boot: %+v, %v", r, err)
	}
	// An hour on, powered off and on: its disk, no netboot.
	clock = clock.Add(time.Hour)
	boot := clock.Add(-time.Minute)
	r, err = s.ReportHealth(mac, "ceph-1", HealthReport{Services: []Service{{Name: "k3s", Status: "starting"}}, Boot: boot})
	if err != nil {
		t.Fatal(err)
	}
	if !r.PowerOn().Equal(boot) || !r.Health.Services[0].HealthyAt.IsZero() {
		t.Fatalf("after a disk boot: power-on %v (want %v), k3s %+v", r.PowerOn(), boot, r.Health.Services[0])
	}
	clock = clock.Add(2 * time.Minute)
	if r, err = s.ReportHealth(mac, "ceph-1", HealthReport{Services: ok, Boot: boot}); err != nil || !r.Health.Services[0].HealthyAt.Equal(clock) || !r.PowerOn().Equal(boot) {
		t.Fatalf("healthy in the disk boot: %+v, %v", r, err)
	}
}
