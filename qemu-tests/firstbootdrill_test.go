package qemutests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/httpd"
	"github.com/kilnlab/kiln/qemu-tests/lab"
	"github.com/kilnlab/kiln/qemu-tests/rehearse"
)

// The first-boot drill: a storage node, installed, loses its power in
// the middle of its first-boot phases (inside Ceph's monitor start, its
// OSD creation, Consul's election and Vault's unseal), each time powered
// on again from its disk. Its phases must resume where the cut left them
// and its services end healthy, reported to the gate, without anyone
// acting; a phase that cannot go on must say why on the gate's page.

// firstBootCuts, in first-boot order: the cut comes a random time up to
// delay after the task's start line.
var firstBootCuts = []cutPoint{
	{"ceph: the monitor starting", regexp.MustCompile(`msg=task task=ceph\.mon-start`), 4 * time.Second},
	{"ceph: making the first OSD", regexp.MustCompile(`msg=task task=ceph\.osd-system`), 40 * time.Second},
	{"consul: electing its leader", regexp.MustCompile(`msg=task task=consul\.leader`), 10 * time.Second},
	{"vault: being unsealed", regexp.MustCompile(`msg=task task=vault\.unseal`), 6 * time.Second},
}

func TestFirstBootPowerCut(t *testing.T) {
	requireLab(t)
	if os.Getenv("KILN_E2E") != "1" {
		t.Skip("the first-boot drill is make e2e's (KILN_E2E=1)")
	}
	_, seed := drillKnobs(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x6b696c6e))
	t.Logf("first-boot drill: %d cuts, seed %d (%s=%d replays them)", len(firstBootCuts), seed, drillSeedEnv, seed)
	ctx := testContext(t, cephDeadline+time.Duration(len(firstBootCuts))*10*time.Minute)
	l, p := startLab(t, ctx, profiles.DHCPProxy, gateVM)
	m := machine(t, p, "node-s")
	cfg := lab.ConfigFor(p.Lab, m)
	cfg.FailOn = append(cfg.FailOn, installDeadEnd)

	vm, err := startVM(ctx, l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`KILN-INSTALL-OK`)); err != nil {
		vm.Stop()
		t.Fatalf("install: %v\n%s", err, vm.Tail(20))
	}
	for i, pt := range firstBootCuts {
		delay := time.Duration(rng.Int64N(int64(pt.delay)))
		if _, err := vm.WaitFor(ctx, pt.at); err != nil {
			vm.Stop()
			t.Fatalf("cut %d: waiting for %s: %v\n%s", i+1, pt.at, err, vm.Tail(30))
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		vm.Stop() // SIGKILL: the power cut
		t.Logf("cut %d: %s (+%s); the gate shows %s", i+1, pt.name, delay.Round(time.Millisecond), gatePhase(t, l, m.Name))
		c := cfg
		c.Name = fmt.Sprintf("%s-fbcut%d", m.Name, i+1)
		if vm, err = l.PowerOn(ctx, c, vm.Hardware()); err != nil {
			t.Fatalf("power on after cut %d: %v", i+1, err)
		}
	}
	defer vm.Stop()
	start := time.Now()
	hctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	err = l.WaitHealth(hctx, []string{m.Name}, start, rehearse.ServicesHealthy(p, m), func(_ string, h *httpd.HealthStatus) {
		t.Logf("%s healthy %s after the last power-on: %s", m.Name, h.At.Sub(start).Round(time.Second), rehearse.Describe(h))
	})
	if err != nil {
		t.Errorf("%s after the cuts: %v; the gate shows %s\n%s", m.Name, err, gatePhase(t, l, m.Name), vm.Tail(30))
	}
	for _, ms := range gateStatus(t, l).Machines {
		if ms.Name != m.Name {
			continue
		}
		var rows []string
		for _, ph := range ms.Phases {
			rows = append(rows, fmt.Sprintf("%s %s (attempts %d)", ph.Name, ph.Status, ph.Attempts))
			if ph.Status != "done" {
				t.Errorf("phase %s of %s: %s %s %s", ph.Name, m.Name, ph.Status, ph.Message, ph.Error)
			}
		}
		t.Logf("the gate's page: %s", strings.Join(rows, ", "))
	}
	checkGateStatus(t, l, m.Name, "installed")
}

// gatePhase says which first-boot phase the gate's page shows machine at,
// with its task and attempt, or why it cannot tell.
func gatePhase(t *testing.T, l *rehearse.Lab, machine string) string {
	t.Helper()
	phases, err := l.Phases()
	if err != nil {
		return "no status: " + err.Error()
	}
	ph, ok := phases[machine]
	if !ok {
		return "no phase yet"
	}
	s := fmt.Sprintf("phase %s %s", ph.Name, ph.Status)
	if ph.Task != "" {
		s += " at " + ph.Task
	}
	if ph.Attempts > 0 {
		s += fmt.Sprintf(" (attempt %d)", ph.Attempts)
	}
	if ph.Error != "" {
		s += ": " + ph.Error
	}
	return s
}
