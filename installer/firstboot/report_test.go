package firstboot

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/installer/efiboot/efiboottest"
	"github.com/kilnlab/kiln/installer/gateclient/gatetest"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
)

// TestReportHealthNetboot: a re-armed UEFI machine's health report makes
// its next boot the netboot (BootNext), once, says so on the console and
// to the gate; a BIOS machine and a machine not re-armed change nothing.
func TestReportHealthNetboot(t *testing.T) {
	ctx := context.Background()
	boot := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	newEnv := func(t *testing.T, vars efiboottest.Vars) (*Env, *gatetest.Gate, *bytes.Buffer) {
		g := gatetest.New(t, plan.Machine{Name: "node-b", MAC: efiboottest.MAC}, "token", nil, nil)
		var console bytes.Buffer
		env := &Env{Log: quiet(), Console: &console, Storage: &Storage{Root: t.TempDir()},
			Machine: Machine{Name: "node-b", Role: profiles.RoleCompute, MAC: efiboottest.MAC}, HTTP: g.Client(),
			BootTime: func() (time.Time, error) { return boot, nil }}
		if vars != nil {
			env.EFIVars = vars
		}
		return env, g, &console
	}
	reports := func(g *gatetest.Gate) []bool {
		var out []bool
		for _, h := range g.Health() {
			out = append(out, h.NetbootNext)
		}
		return out
	}
	const line = "KILN-NETBOOT-NEXT host=node-b entry=Boot0002"

	vars := efiboottest.OVMF()
	vars[efiboottest.Desc("BootOrder")] = efiboottest.Uint16s(6, 2, 0, 1, 3, 4, 5)
	env, g, console := newEnv(t, vars)
	if err := env.ReportHealth(ctx, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if _, ok := vars[efiboottest.Desc("BootNext")]; ok {
		t.Error("BootNext written for a machine the gate did not re-arm")
	}
	g.SetNetboot(true)
	if err := env.ReportHealth(ctx, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if got := vars[efiboottest.Desc("BootNext")]; !slices.Equal(got, efiboottest.Uint16s(2)) {
		t.Errorf("BootNext = %x, want the PXEv4 entry 0002", got)
	}
	if !strings.Contains(console.String(), line) {
		t.Errorf("console:\n%s", console)
	}
	// Told again: nothing more to do, and the report says it is done.
	if err := env.ReportHealth(ctx, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(console.String(), line); n != 1 {
		t.Errorf("%d console lines %q, want 1:\n%s", n, line, console)
	}
	if d := cmp.Diff([]bool{false, false, true, true}, reports(g)); d != "" {
		t.Errorf("reports' netboot_next (-want +got):\n%s", d)
	}
	for _, h := range g.Health() {
		if !h.Boot.Equal(boot) {
			t.Errorf("a report says the system started at %v, want %v", h.Boot, boot)
		}
	}

	// No PXE entry for the NIC: the run fails and says why.
	vars = efiboottest.OVMF()
	delete(vars, efiboottest.Desc("Boot0002"))
	env, g, console = newEnv(t, vars)
	g.SetNetboot(true)
	if err := env.ReportHealth(ctx, t.TempDir()); err == nil || !strings.Contains(console.String(), "KILN-NETBOOT-FAILED host=node-b") {
		t.Errorf("without a PXE entry: %v\nconsole:\n%s", err, console)
	}

	// BIOS: no variables, nothing to do but report.
	env, g, console = newEnv(t, nil)
	g.SetNetboot(true)
	if err := env.ReportHealth(ctx, t.TempDir()); err != nil || strings.Contains(console.String(), "NETBOOT") {
		t.Errorf("BIOS: %v\nconsole:\n%s", err, console)
	}
	if d := cmp.Diff([]bool{false}, reports(g)); d != "" {
		t.Errorf("BIOS reports (-want +got):\n%s", d)
	}
}

func TestParseBtime(t *testing.T) {
	for _, tc := range []struct {
		stat string
		want time.Time
		ok   bool
	}{
		{"cpu  1 2 3\nintr 5\nbtime 1796522400\nprocesses 9\n", time.Unix(1796522400, 0).UTC(), true},
		{"cpu  1 2 3\n", time.Time{}, false},
		{"btime soon\n", time.Time{}, false},
		{"btime 0\n", time.Time{}, false},
	} {
		got, err := parseBtime([]byte(tc.stat))
		if (err == nil) != tc.ok || !got.Equal(tc.want) {
			t.Errorf("parseBtime(%q) = %v, %v; want %v", tc.stat, got, err, tc.want)
		}
	}
}
