package firstboot

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/installer/gateclient/gatetest"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/roles"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func addrs(s ...string) func() ([]net.Addr, error) {
	return func() ([]net.Addr, error) {
		var out []net.Addr
		for _, a := range s {
			ip, n, _ := net.ParseCIDR(a)
			n.IP = ip
			out = append(out, n)
		}
		return out, nil
	}
}

func TestFirstBoot(t *testing.T) {
	m := Machine{Name: "ceph-1", MAC: "52:54:00:00:00:11", Address: "192.168.1.11/24"}
	g := gatetest.New(t, plan.Machine{Name: m.Name, MAC: m.MAC, Address: m.Address}, "tok", nil, nil)
	var ran []string
	console := &bytes.Buffer{}
	env := &Env{
		Log: quiet(), Console: console, Machine: withGate(m, g.URL), Hostname: host("ceph-1"), StatePartUUID: "abcd",
		Exec: func(_ context.Context, name string, args ...string) error {
			ran = append(ran, name+" "+strings.Join(args, " "))
			return nil
		},
		Addrs: addrs("127.0.0.1/8", "192.168.1.11/24"),
	}
	env.HTTP = (&gatetest.Gate{URL: g.URL}).Client()
	env.HTTP.MAC = m.MAC
	dir := t.TempDir()
	r := Runner{Dir: dir, Log: quiet(), Report: env.HTTP}
	for range 2 { // the second run finds everything done
		if err := r.Run(context.Background(), env.Phases()); err != nil {
			t.Fatal(err)
		}
	}
	running := func(phase, task, msg string) api.Phase {
		return api.Phase{Phase: phase, Status: api.PhaseRunning, Task: task, Message: msg}
	}
	done := func(phase, msg string) api.Phase { return api.Phase{Phase: phase, Status: api.PhaseDone, Message: msg} }
	if d := cmp.Diff([]api.Phase{
		running("storage", "", ""), running("storage", "grow-state", "task 1 of 1"), done("storage", ""),
		running("network", "", ""), running("network", "wait-address", "task 1 of 1"), done("network", ""),
		running("announce", "", ""), running("announce", "console", "task 1 of 2"), running("announce", "gate", "task 2 of 2"), done("announce", ""),
		// The second run.
		done("storage", "already done"), done("network", "already done"), done("announce", "already done"),
	}, g.Phases()); d != "" {
		t.Errorf("phase reports (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"resize2fs /dev/disk/by-partuuid/abcd"}, ran); d != "" {
		t.Errorf("commands (-want +got):\n%s", d)
	}
	if got := console.String(); got != "KILN-BOOTED host=ceph-1 addr=192.168.1.11/24\n" {
		t.Errorf("console = %q", got)
	}
	if b := g.Booted(); len(b) != 1 || b[0].Address != "192.168.1.11/24" {
		t.Errorf("booted reports = %+v", b)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if d := cmp.Diff([]string{"announce.console", "announce.gate", "network.wait-address", "storage.grow-state"}, names); d != "" {
		t.Errorf("records (-want +got):\n%s", d)
	}
}

// fakeReporter records phase reports; fail says which to refuse, as a
// gate that is down.
type fakeReporter struct {
	got  []api.Phase
	fail func(api.Phase) bool
}

func (f *fakeReporter) Phase(_ context.Context, p api.Phase) error {
	if f.fail != nil && f.fail(p) {
		return errors.New("connection refused")
	}
	f.got = append(f.got, p)
	return nil
}

// TestFailedPhaseReportedAndRetried: a failing task fails its phase,
// which is reported failed with the error, is not recorded, and runs
// again (and is reported again) at the next run.
func TestFailedPhaseReportedAndRetried(t *testing.T) {
	fail := errors.New("disk on fire")
	runs := 0
	phases := []Phase{
		{Name: "one", Tasks: []Task{{Name: "a", Run: func(context.Context) error { return nil }}}},
		{Name: "two", Tasks: []Task{
			{Name: "b", Run: func(context.Context) error { return nil }},
			{Name: "c", Run: func(context.Context) error {
				if runs++; runs == 1 {
					return fail
				}
				return nil
			}},
		}},
		{Name: "three", Tasks: []Task{{Name: "d", Run: func(context.Context) error { return nil }}}},
	}
	rep := &fakeReporter{}
	r := Runner{Dir: t.TempDir(), Log: quiet(), Report: rep}
	if err := r.Run(context.Background(), phases); !errors.Is(err, fail) {
		t.Fatalf("Run() = %v, want the task's error", err)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "two.c")); err == nil {
		t.Error("a failed task was recorded")
	}
	if err := r.Run(context.Background(), phases); err != nil {
		t.Fatal(err)
	}
	want := []api.Phase{
		{Phase: "one", Status: api.PhaseRunning},
		{Phase: "one", Status: api.PhaseRunning, Task: "a", Message: "task 1 of 1"},
		{Phase: "one", Status: api.PhaseDone},
		{Phase: "two", Status: api.PhaseRunning},
		{Phase: "two", Status: api.PhaseRunning, Task: "b", Message: "task 1 of 2"},
		{Phase: "two", Status: api.PhaseRunning, Task: "c", Message: "task 2 of 2"},
		{Phase: "two", Status: api.PhaseFailed, Task: "c", Error: "disk on fire"},
		// The next run: "two" again, from its task not done.
		{Phase: "one", Status: api.PhaseDone, Message: "already done"},
		{Phase: "two", Status: api.PhaseRunning},
		{Phase: "two", Status: api.PhaseRunning, Task: "c", Message: "task 2 of 2"},
		{Phase: "two", Status: api.PhaseDone},
		{Phase: "three", Status: api.PhaseRunning},
		{Phase: "three", Status: api.PhaseRunning, Task: "d", Message: "task 1 of 1"},
		{Phase: "three", Status: api.PhaseDone},
	}
	if d := cmp.Diff(want, rep.got); d != "" {
		t.Errorf("reports (-want +got):\n%s", d)
	}
}

// TestReportsNeverStopTheFirstBoot: with a gate that refuses every
// report, every task still runs and is recorded, and the reports are
// logged.
func TestReportsNeverStopTheFirstBoot(t *testing.T) {
	rep := &fakeReporter{fail: func(api.Phase) bool { return true }}
	logs := &bytes.Buffer{}
	ran := 0
	task := func(context.Context) error { ran++; return nil }
	r := Runner{Dir: t.TempDir(), Log: slog.New(slog.NewTextHandler(logs, nil)), Report: rep}
	if err := r.Run(context.Background(), []Phase{
		{Name: "one", Tasks: []Task{{Name: "a", Run: task}, {Name: "b", Run: task}}},
		{Name: "two", Tasks: []Task{{Name: "c", Run: task}}},
	}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(r.Dir)
	if ran != 3 || len(ents) != 3 {
		t.Errorf("%d tasks ran, %d recorded; want 3 and 3", ran, len(ents))
	}
	if !strings.Contains(logs.String(), "cannot report to the gate") {
		t.Errorf("unsent reports not logged:\n%s", logs)
	}
}

// TestResultsSentOnceTheGateAnswers: the results of phases that ran
// while the gate could not be reached (before the network is up) reach
// it, in order, with the first report it answers; their progress is not
// replayed.
func TestResultsSentOnceTheGateAnswers(t *testing.T) {
	up := false
	rep := &fakeReporter{fail: func(api.Phase) bool { return !up }}
	ok := func(context.Context) error { return nil }
	r := Runner{Dir: t.TempDir(), Log: quiet(), Report: rep}
	if err := r.Run(context.Background(), []Phase{
		{Name: "storage", Tasks: []Task{{Name: "grow", Run: ok}}},
		{Name: "network", Tasks: []Task{{Name: "wait", Run: func(context.Context) error { up = true; return nil }}}},
	}); err != nil {
		t.Fatal(err)
	}
	want := []api.Phase{
		{Phase: "storage", Status: api.PhaseDone},
		{Phase: "network", Status: api.PhaseDone},
	}
	if d := cmp.Diff(want, rep.got); d != "" {
		t.Errorf("reports (-want +got):\n%s", d)
	}
}

func TestResumeAfterFailure(t *testing.T) {
	m := Machine{Name: "c", Address: "10.0.0.5/24"}
	fail := true
	calls := 0
	env := &Env{Log: quiet(), Console: io.Discard, Machine: m, Hostname: host("c"), StatePartUUID: "x",
		Exec: func(context.Context, string, ...string) error {
			calls++
			if fail {
				return errors.New("power cut")
			}
			return nil
		},
		Addrs: addrs("10.0.0.5/24"),
	}
	r := Runner{Dir: t.TempDir(), Log: quiet()}
	if err := r.Run(context.Background(), env.Phases()); err == nil {
		t.Fatal("Run() hid a failing task")
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "storage.grow-state")); err == nil {
		t.Error("a failed task was recorded")
	}
	fail = false
	if err := r.Run(context.Background(), env.Phases()); err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("resize2fs ran %d times, want 2", calls)
	}
}

func TestGateUnreachableIsNotFatal(t *testing.T) {
	m := Machine{Name: "c", Address: "10.0.0.5/24"}
	console := &bytes.Buffer{}
	env := &Env{Log: quiet(), Console: console, Machine: m, Hostname: host("c"), StatePartUUID: "x",
		Exec:  func(context.Context, string, ...string) error { return nil },
		Addrs: addrs("10.0.0.5/24"),
		HTTP:  (&gatetest.Gate{URL: "http://127.0.0.1:1"}).Client(),
	}
	r := Runner{Dir: t.TempDir(), Log: quiet(), Report: env.HTTP, ReportTimeout: 5 * time.Second}
	if err := r.Run(context.Background(), env.Phases()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "announce.gate")); err == nil {
		t.Error("an unreported boot was recorded as reported")
	}
	if !strings.Contains(console.String(), "KILN-BOOTED host=c addr=10.0.0.5/24") {
		t.Errorf("console = %q", console)
	}
}

func TestAddressNeverAppears(t *testing.T) {
	env := &Env{Machine: Machine{Address: "10.0.0.5/24"}, Addrs: addrs("10.0.0.6/24"), Poll: time.Millisecond, AddressTimeout: time.Millisecond}
	if err := env.waitAddress(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waitAddress() = %v", err)
	}
}

func TestLoadMachine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "machine.json")
	if err := os.WriteFile(p, []byte(`{"name":"ceph-1","address":"10.0.0.11/24","mac":"52:54:00:00:00:11","gate_url":"http://10.0.0.2:8080"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := LoadMachine(p)
	if err != nil || m.Name != "ceph-1" || m.GateURL != "http://10.0.0.2:8080" {
		t.Errorf("LoadMachine() = %+v, %v", m, err)
	}
}

func TestUnit(t *testing.T) {
	for _, want := range []string{"After=network-online.target", "StandardOutput=journal+console", "ExecStart=" + BinaryPath, "WantedBy=multi-user.target", "Type=oneshot",
		// A failed phase is retried without a reboot, for ever.
		"Restart=on-failure", "RestartSec=30s", "StartLimitIntervalSec=0"} {
		if !strings.Contains(Unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}

func withGate(m Machine, url string) Machine {
	m.GateURL = url
	return m
}

func host(name string) func() (string, error) {
	return func() (string, error) { return name, nil }
}

// The plan shows each machine's first-boot phases from package roles:
// they must be the phases this program runs, with the machine's identity
// as roles renders it, for every role, with and without the services.
func TestPhasesMatchRoles(t *testing.T) {
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	bare := *p
	bare.Services = nil
	for _, lab := range []*profiles.Profile{p, &bare} {
		for i := range lab.Machines {
			m := &lab.Machines[i]
			if m.Role == profiles.RoleGate {
				continue
			}
			want, err := roles.FirstBootPhases(lab, m)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, ph := range (&Env{Machine: renderedIdentity(t, lab, m)}).Phases() {
				names = append(names, ph.Name)
			}
			if diff := cmp.Diff(want, names); diff != "" {
				t.Errorf("%s (services %v) first-boot phases (-roles +firstboot):\n%s", m.Name, lab.Services != nil, diff)
			}
		}
	}
}

// renderedIdentity is m's machine.json as roles renders it.
func renderedIdentity(t *testing.T, p *profiles.Profile, m *profiles.Machine) Machine {
	t.Helper()
	cfg, err := roles.Render(p, m)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := roles.Apply(cfg, root); err != nil {
		t.Fatal(err)
	}
	id, err := LoadMachine(filepath.Join(root, roles.IdentityPath))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestEveryBoot: an EveryBoot task runs at each Run and is never recorded;
// the once-only task beside it runs once.
func TestEveryBoot(t *testing.T) {
	var ran []string
	task := func(name string) func(context.Context) error {
		return func(context.Context) error { ran = append(ran, name); return nil }
	}
	phases := []Phase{{Name: "time", Tasks: []Task{
		{Name: "step", Run: task("step"), EveryBoot: true},
		{Name: "once", Run: task("once")},
	}}}
	r := Runner{Dir: t.TempDir(), Log: quiet()}
	for range 3 {
		if err := r.Run(context.Background(), phases); err != nil {
			t.Fatal(err)
		}
	}
	if d := cmp.Diff([]string{"step", "once", "step", "step"}, ran); d != "" {
		t.Errorf("ran (-want +got):\n%s", d)
	}
	if r.done("time.step") || !r.done("time.once") {
		t.Errorf("records: time.step %v (want none), time.once %v", r.done("time.step"), r.done("time.once"))
	}
}

// TestTornMarkerNeverDone: a power cut inside record leaves at most a
// partial temporary file beside the markers (the marker itself appears
// only by rename, after an fsync). That file never counts as a task done:
// the task runs again, and its marker is then whole.
func TestTornMarkerNeverDone(t *testing.T) {
	m := Machine{Name: "c", Address: "10.0.0.5/24"}
	calls := 0
	env := &Env{Log: quiet(), Console: io.Discard, Machine: m, Hostname: host("c"), StatePartUUID: "x",
		Exec:  func(context.Context, string, ...string) error { calls++; return nil },
		Addrs: addrs("10.0.0.5/24"),
	}
	r := Runner{Dir: t.TempDir(), Log: quiet()}
	if err := os.WriteFile(filepath.Join(r.Dir, ".tmp-1234"), []byte("do"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background(), env.Phases()); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("resize2fs ran %d times beside a torn marker, want 1", calls)
	}
	b, err := os.ReadFile(filepath.Join(r.Dir, "storage.grow-state"))
	if err != nil || string(b) != "done\n" {
		t.Errorf("marker after the run: %q, %v", b, err)
	}
}
